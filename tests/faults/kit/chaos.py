"""The chaos table: a row per fault test (acked, stored, delivered, lost, duplicated,
recovery), printed at the end of the run (tests/conftest.py) and written into
docs/reliability.md by `make chaos`; and the report lines a fault test prints and appends to
FAULTS_REPORT."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.faults.kit.client import ChatClient
from tests.faults.kit.counting import Verdict

CHAOS_ROWS: list[dict] = []


def chaos_row(
    fault: str,
    *,
    acked: int,
    stored: int | None,
    delivered: int | None,
    lost: int,
    duplicated: int,
    recovery: float | None = None,
) -> None:
    """One row of the table `make chaos` prints (tests/conftest.py prints it at the end).

    ``delivered`` counts copies received by the test's clients; ``lost`` counts acked
    messages missing from PostgreSQL or from a client that should have had them;
    ``recovery`` is the seconds from the repair (or the fault) to everything delivered
    and stored, where the test measures it. None: the test does not count that column."""
    CHAOS_ROWS.append(
        {
            "fault": fault,
            "acked": acked,
            "stored": stored,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "recovery": recovery,
        }
    )


def longest_outage(clients: list[ChatClient]) -> float | None:
    """Seconds from a client losing its socket to its resubscription, at worst; None when
    no client lost one."""
    outages = [c.longest_outage for c in clients if c.longest_outage]
    return max(outages) if outages else None


def verdict_row(fault: str, verdict: Verdict, recovery: float | None = None) -> None:
    chaos_row(
        fault,
        acked=verdict.acked,
        stored=verdict.rows,
        delivered=sum(verdict.received.values()) if verdict.received else None,
        lost=verdict.lost,
        duplicated=verdict.duplicated,
        recovery=recovery,
    )


def chaos_table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""

    def cell(value) -> str:
        if value is None:
            return "—"
        return f"{value:.1f} s" if isinstance(value, float) else str(value)

    columns = ["fault", "acked", "stored", "delivered", "lost", "duplicated", "recovery"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


TABLE_START = "<!-- chaos table: written by make chaos -->"
TABLE_END = "<!-- end of chaos table -->"


def write_reliability_table(path: Path, rows: list[dict], *, passed: int, failed: int) -> None:
    """Put the table between the markers in ``path`` (docs/reliability.md), with when and
    on what it was run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=False).stdout
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (
        f"{TABLE_START}\n"
        f"Run {stamp} on commit {commit or 'unknown'}{' plus uncommitted changes' if dirty.strip() else ''}, "
        f"{os.cpu_count()} cores: {passed} tests passed, {failed} failed.\n\n"
        f"{chaos_table(rows)}\n{TABLE_END}"
    )
    text = path.read_text() if path.exists() else f"{TABLE_START}\n{TABLE_END}\n"
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    path.write_text(head + block + tail)


def report(name: str, *lines: str) -> None:
    print(f"\n[{name}]")
    for line in lines:
        print(f"  {line}")
    with open(os.environ.get("FAULTS_REPORT", "/tmp/pubsub-faults-report.txt"), "a") as out:
        out.write(f"[{name}]\n" + "".join(f"  {line}\n" for line in lines))
