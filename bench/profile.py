"""Summaries of a py-spy profile (``--format raw``: one collapsed stack and its sample count a line)."""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def pyspy_path() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def area_of(path: str) -> str:
    """Which library or part of the project a source file belongs to.

    py-spy names files relative to their sys.path entry (``asyncio/events.py``,
    ``channels_redis/core.py``, ``messaging/realtime/consumers.py``), or by full path.
    """
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    match = re.search(r"lib/python3\.\d+/(.*)", path)
    if match:
        path = match.group(1)
    head = path.split("/", 1)[0].removesuffix(".py")
    if head in ("messaging", "rooms", "accounts", "pubsub_site"):
        return f"project: {head}"
    return head


def _short(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    match = re.search(r"lib/python3\.\d+/(.*)", path)
    return match.group(1) if match else path


def summarise(raw: str, top: int = 15) -> dict:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for part in stack.split(";"):
            match = FRAME.match(part)
            if match and not part.startswith(("process ", "thread ")):
                frames.append(f"{match['name']} ({_short(match['file'])})")
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        leaf_file = FRAME.match(stack.split(";")[-1])
        areas[area_of(leaf_file["file"]) if leaf_file else "?"] += count
        for name in set(frames):
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[dict]:
        return [
            {"function": k, "samples": v, "percent": round(100 * v / total, 1)} for k, v in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self": share(self_time),
        "inclusive": share(inclusive),
        "by_area": [{"area": k, "samples": v, "percent": round(100 * v / total, 1)} for k, v in areas.most_common(12)],
    }
