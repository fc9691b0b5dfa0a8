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


class Spy:
    """py-spy on some processes for as long as the ``with`` block lasts: where their CPU went.

    ``summary`` (after the block) merges every process's samples (on-CPU only, at ``rate`` a
    second): the same form as :func:`summarise`, with the raw files' paths. ``None`` paths
    mean py-spy is not installed: the block runs unprofiled and ``summary`` says so.
    """

    def __init__(self, pids: list[int], name: str, rate: int = 100):
        import tempfile

        self.pids = pids
        self.rate = rate
        self.dir = Path(tempfile.mkdtemp(prefix=f"pubsub-spy-{name}-"))
        self.procs: list = []
        self.summary: dict = {}

    def __enter__(self) -> Spy:
        import subprocess
        import time

        spy = pyspy_path()
        if spy is None:
            self.summary = {"skipped": "py-spy is not installed (pip install py-spy)"}
            return self
        for pid in self.pids:
            command = [spy, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
                       "--nonblocking", "--output", str(self.dir / f"{pid}.raw")]  # fmt: skip
            self.procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        errors = []
        for proc in self.procs:
            try:
                _, err = proc.communicate(timeout=60)
            except Exception:  # a py-spy that hangs costs its profile, not the run
                proc.kill()
                err = b"did not stop"
            if proc.returncode not in (0, -2, 130):
                errors.append(err.decode(errors="replace")[-200:])
        raws = sorted(self.dir.glob("*.raw"))
        if self.procs:
            self.summary = summarise("\n".join(p.read_text() for p in raws))
            self.summary["raw_files"] = [str(p) for p in raws]
            if errors:
                self.summary["errors"] = errors


def spying(on: bool, pids: list[int], name: str, rate: int = 100):
    """A :class:`Spy` on ``pids`` for the ``with`` block when ``on`` (a ``--profile`` option asked
    for it); otherwise nothing, and the block's ``as`` target is ``None``."""
    from contextlib import nullcontext

    return Spy(pids, name, rate=rate) if on else nullcontext(None)
