"""What the benchmark reads off the machine and how it turns samples into figures: RSS and CPU
time from /proc (a process and the processes it started, the whole machine, PostgreSQL's and
Redis's processes), the cores each group used over a step (``CpuMeter``), the waits for a quiet
machine and for idle processes, and the percentiles of latency samples.
"""

from __future__ import annotations

import os
import time
from array import array
from pathlib import Path

import numpy as np

from pubsub_site.cluster import descendants


def rss_kib(pid: int) -> int:
    """RSS of a process and the processes it started (granian serves from a child process)."""
    total = 0
    for each in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU time of a process; with ``children``, also of its reaped children (rq forks a child per job)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid, children=True)
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


# The services the benchmark shares the machine with, by process name: every PostgreSQL
# and Redis process of the machine (an idle second cluster adds nothing).
SERVICES = {"postgres": "postgres", "redis": "redis-server"}


def service_cpu() -> dict[str, dict[int, float]]:
    """CPU seconds of each process of each service in ``SERVICES``, by pid."""
    found: dict[str, dict[int, float]] = {name: {} for name in SERVICES}
    by_comm = {comm: name for name, comm in SERVICES.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in by_comm:
                found[by_comm[comm]][int(entry.name)] = cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return found


class CpuMeter:
    """Cores used over a step: the whole machine, each group of our processes, and
    PostgreSQL's and Redis's processes (part of ``rest``, which is everything not ours)."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups

    def __enter__(self) -> CpuMeter:
        self.wall = time.monotonic()
        self.machine = machine_busy_seconds()
        self.before = {name: sum(_cpu(p) for p in pids) for name, pids in self.groups.items()}
        self.services_before = service_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.wall
        used = {name: sum(_cpu(p) for p in pids) - self.before[name] for name, pids in self.groups.items()}
        machine = machine_busy_seconds() - self.machine
        services = {
            # a process gone since the start takes its CPU with it; a new one counts from 0
            name: sum(seconds - self.services_before[name].get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in service_cpu().items()
        }
        self.seconds = {name: round(v, 3) for name, v in used.items()}
        self.cores = {name: round(v / wall, 2) for name, v in used.items()}
        self.cores["machine"] = round(machine / wall, 2)
        # PostgreSQL, Redis, and whatever else runs on the machine (other people's test runs)
        self.cores["rest"] = round((machine - sum(used.values())) / wall, 2)
        self.service_cores = {name: round(v / wall, 2) for name, v in services.items()}


def wait_for_quiet_machine(max_wait: float, log, busy_cores: float = 0.4) -> dict:
    """Wait (bounded) until other work on the machine uses under ``busy_cores``; report what was seen."""
    started = time.monotonic()
    sample = 1.0 if max_wait > 0 else 0.2  # no waiting asked for: only say how busy it is
    while True:
        before = machine_busy_seconds()
        time.sleep(sample)
        busy = (machine_busy_seconds() - before) / sample
        waited = time.monotonic() - started
        if busy < busy_cores or waited >= max_wait:
            if busy >= busy_cores:
                log(f"    the machine stays busy ({busy:.2f} cores used by others); going on after {waited:.0f} s")
            return {"busy_cores_before": round(busy, 2), "waited_s": round(waited, 1)}


def wait_idle(pids: list[int], timeout: float = 15.0, busy_share: float = 0.1) -> float:
    """Wait until the processes use under ``busy_share`` of a core (a backlog has drained)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(_cpu(p) for p in pids)
        time.sleep(0.3)
        if sum(_cpu(p) for p in pids) - before < busy_share * 0.3 * len(pids):
            break
    return time.monotonic() - started


# --- figures ---------------------------------------------------------------------


def percentiles_ms(samples_ns: array) -> dict[str, float | None]:
    if not len(samples_ns):
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = np.frombuffer(samples_ns, dtype=np.int64) / 1e6
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "max_ms": round(float(values.max()), 2)}


def seconds_percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_s": round(float(p50), 3), "p99_s": round(float(p99), 3), "max_s": round(max(values), 3)}


def join_arrays(chunks: list[bytes]) -> array:
    out = array("q")
    for chunk in chunks:
        out.frombytes(chunk)
    return out
