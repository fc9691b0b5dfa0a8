"""The orchestrator: starts the servers it measures, drives the client processes, computes figures.

Sections (``--only``):

- ``latency``      10 rooms x 20 members, delivered rate stepped up: p50/p99/max at
                   2k, 5k, 10k, 20k delivered/s, then higher while p99 < 100 ms and
                   nothing is lost: the shape's capacity
- ``fanout``       1 room x 1,000 members, stepped up the same way
- ``persistence``  1,000 messages a second: time from ack to the row in PostgreSQL
- ``memory``       RSS growth of a fresh web process over 5,000 idle subscribed connections
- ``profile``      py-spy on the web process during a latency step: where the time goes
"""

from __future__ import annotations

import bisect
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import fixtures
from bench.loadgen import client_main, raise_open_files_limit
from pubsub_site.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
P99_LIMIT_MS = 100.0
BENCH_SEND_LIMIT = "100000/second"

UVICORN = (
    "uvicorn pubsub_site.asgi:application --host 127.0.0.1 --port $PORT --no-access-log --lifespan off"
    " --loop uvloop --http httptools --ws websockets"
)
WEB_COMMANDS = {"daphne": None, "uvicorn": UVICORN}  # None: the Procfile's `web` (daphne)
# What-if variants (bench/whatif.py): the same application with one suggested change applied.
VARIANTS = {"fastdispatch": "bench.whatif:application"}


@dataclass(frozen=True)
class ServerConfig:
    server: str  # daphne | uvicorn
    layer: str  # core | pubsub
    webs: int = 1
    variant: str = ""  # "" (the project as it is) or a key of VARIANTS

    @property
    def key(self) -> str:
        return f"{self.server}-{self.layer}-{self.webs}p" + (f"-{self.variant}" if self.variant else "")

    @property
    def label(self) -> str:
        return (
            f"{self.server} + {self.layer}"
            + (f" ({self.webs} procs)" if self.webs > 1 else "")
            + (f" [what-if: {self.variant}]" if self.variant else "")
        )

    @property
    def web_command(self) -> str:
        from pubsub_site.cluster import procfile_commands

        command = WEB_COMMANDS[self.server] or procfile_commands()["web"]
        if self.variant:
            command = command.replace("pubsub_site.asgi:application", VARIANTS[self.variant])
        return command


@dataclass
class Plan:
    database_url: str
    redis_url: str
    configs: list[tuple[ServerConfig, list[str]]]  # each config and the sections it runs
    duration: float = 5.0
    drain_timeout: float = 5.0  # give up draining after this long with nothing arriving (3x at most)
    clients: int = 1
    latency_shape: tuple[int, int] = (10, 20)
    latency_ladder: list[int] = field(
        default_factory=lambda: [500, 1000, 2000, 5000, 10000, 15000, 20000, 30000, 40000, 50000]
    )
    fixed_rates: list[int] = field(default_factory=lambda: [1000, 2000, 5000, 10000, 20000])
    fanout_shape: tuple[int, int] = (1, 1000)
    # Distinct users among the 1,000 members (the others are more tabs of the same users):
    # each user's first tab broadcasts a presence join to the whole room, so 1,000 distinct
    # users cost 1,000 x ~500 presence frames before the first message.
    fanout_users: int = 50
    fanout_ladder: list[int] = field(default_factory=lambda: [500, 1000, 2000, 5000, 10000, 20000, 30000, 40000, 60000])
    persistence_rate: int = 1000
    persistence_shape: tuple[int, int] = (10, 1)
    memory_connections: int = 5000
    memory_room_size: int = 20
    memory_warmup: int = 200
    memory_budget: float = 300.0  # seconds to open the idle connections; those not opened by then are skipped
    profile_rate: int = 1000
    profile_seconds: float = 10.0
    quiet_wait: float = 20.0  # seconds to wait for other work on the machine to calm down before a section
    log: object = print
    redis_pid: int | None = None


# --- client processes -----------------------------------------------------------


class ClientPool:
    """``count`` load-generator processes, each with its own uvloop."""

    def __init__(self, count: int):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=client_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def __len__(self) -> int:
        return len(self.pipes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def call(self, command: str, kwargs: list[dict], timeout: float = 600) -> list[dict]:
        for pipe, args in zip(self.pipes, kwargs, strict=True):
            pipe.send((command, args))
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"client did not answer {command} within {timeout} s")
            reply = pipe.recv()
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"client failed on {command}: {reply['error']}")
            replies.append(reply)
        return replies

    def each(self, command: str, timeout: float = 600, **kwargs) -> list[dict]:
        return self.call(command, [kwargs] * len(self.pipes), timeout)

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("exit", {}))
                pipe.poll(10) and pipe.recv()
            except (OSError, EOFError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- servers ---------------------------------------------------------------------


def server_env(plan: Plan, layer: str) -> dict[str, str]:
    return {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": plan.database_url,
        "REDIS_URL": plan.redis_url,
        "ROOM_REDIS_URLS": plan.redis_url,
        "CHANNEL_REDIS_URLS": plan.redis_url,
        "CHANNEL_LAYER": layer,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # The per-user send limit (5 a second) would refuse the benchmark's members, who send
        # faster than people do: it still runs on every send, but with a ceiling nobody reaches.
        "WS_RATE_LIMIT_SEND": BENCH_SEND_LIMIT,
    }


def start_servers(plan: Plan, config: ServerConfig, *, worker: bool = True) -> Cluster:
    cluster = Cluster(
        env=server_env(plan, config.layer),
        web_command=config.web_command,
        log_dir=Path(tempfile.mkdtemp(prefix=f"pubsub-bench-{config.key}-")),
    )
    try:
        for _ in range(config.webs):
            cluster.start_web()
        if worker:
            cluster.start_worker()
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        cluster.stop()
        raise
    return cluster


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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


class CpuMeter:
    """Cores used over a step: the whole machine, and each group of our processes."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups

    def __enter__(self) -> CpuMeter:
        self.wall = time.monotonic()
        self.machine = machine_busy_seconds()
        self.before = {name: sum(_cpu(p) for p in pids) for name, pids in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.wall
        used = {name: sum(_cpu(p) for p in pids) - self.before[name] for name, pids in self.groups.items()}
        machine = machine_busy_seconds() - self.machine
        self.cores = {name: round(v / wall, 2) for name, v in used.items()}
        self.cores["machine"] = round(machine / wall, 2)
        # PostgreSQL, Redis, and whatever else runs on the machine (other people's test runs)
        self.cores["rest"] = round((machine - sum(used.values())) / wall, 2)


def wait_for_quiet_machine(max_wait: float, log, busy_cores: float = 0.4) -> dict:
    """Wait (bounded) until other work on the machine uses under ``busy_cores``; report what was seen."""
    started = time.monotonic()
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        busy = machine_busy_seconds() - before
        waited = time.monotonic() - started
        if busy < busy_cores or waited >= max_wait:
            if busy >= busy_cores:
                log(f"    the machine stays busy ({busy:.2f} cores used by others); going on after {waited:.0f} s")
            return {"busy_cores_before": round(busy, 2), "waited_s": round(waited, 1)}


def wait_idle(pids: list[int], timeout: float = 15.0, busy_share: float = 0.1) -> float:
    """Wait until the processes use under ``busy_share`` of a core (a backlog has drained)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(0.3)
        if sum(cpu_seconds(p) for p in pids) - before < busy_share * 0.3 * len(pids):
            break
    return time.monotonic() - started


# --- figures ---------------------------------------------------------------------


def percentiles_ms(samples_ns: array) -> dict[str, float | None]:
    if not len(samples_ns):
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    values = np.frombuffer(samples_ns, dtype=np.int64) / 1e6
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "max_ms": round(float(values.max()), 2)}


def join_arrays(chunks: list[bytes]) -> array:
    out = array("q")
    for chunk in chunks:
        out.frombytes(chunk)
    return out


# --- a shape of rooms and members under load -------------------------------------


class Shape:
    """Rooms x members connected through the client pool, and the seq range each room had."""

    def __init__(
        self,
        plan: Plan,
        pool: ClientPool,
        population,
        ports: list[int],
        rooms: int,
        members: int,
        tag: str,
        users: int | None = None,
    ):
        self.plan = plan
        self.pool = pool
        self.rooms_count = rooms
        self.members = members
        self.users = min(users or members, members)
        self.rooms = fixtures.make_rooms(population, rooms=rooms, members=members, tag=tag, users=users)
        self.top = {slug: 0 for slug, _ in self.rooms}
        self.ports = ports
        self.cpu_groups: dict[str, list[int]] = {}

    def connect(self, concurrency: int = 20, budget: float | None = None) -> dict:
        per_client: list[list[dict]] = [[] for _ in range(len(self.pool))]
        n = 0
        for slug, sessions in self.rooms:
            for session in sessions:
                spec = {"port": self.ports[n % len(self.ports)], "session": session, "room": slug}
                per_client[n % len(self.pool)].append(spec)
                n += 1
        started = time.monotonic()
        replies = self.pool.call(
            "connect",
            [{"specs": specs, "concurrency": concurrency, "timeout": 60, "budget": budget} for specs in per_client],
        )
        connected = sum(r["connected"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        failures = [f for r in replies for f in r["failures"]]
        return {
            "connections": connected,
            "failed": failed,
            "skipped_after_budget": sum(r.get("skipped", 0) for r in replies),
            "failures": failures[:5],
            "seconds": round(time.monotonic() - started, 2),
        }

    def step(self, delivered_rate: int, *, duration: float, keep_ack_times: bool = False) -> dict:
        """Send at ``delivered_rate / members`` messages a second for ``duration`` s; measure."""
        sends_per_s = delivered_rate / self.members
        start_at = time.monotonic() + 0.3
        with CpuMeter({**self.cpu_groups, "clients": self.pool.pids}) as meter:
            runs = self.pool.each(
                "run",
                rate=sends_per_s / len(self.pool),
                duration=duration,
                start_at=start_at,
                senders=None,
                drain_timeout=self.plan.drain_timeout,
                keep_ack_times=keep_ack_times,
                timeout=duration + 3 * self.plan.drain_timeout + 60,
            )
        ranges = {}
        for slug in self.top:
            acked = [seq for r in runs for seq in r["acked"].get(slug, [])]
            hi = max(acked, default=self.top[slug])
            ranges[slug] = (self.top[slug], hi)
            self.top[slug] = hi
        tallies = self.pool.each("tally", ranges=ranges)
        latency = join_arrays([t["latency_ns"] for t in tallies])
        ack_latency = join_arrays([r["ack_latency_ns"] for r in runs])
        errors = Counter()
        for r in runs:
            errors.update(r["error_codes"])
        sent = sum(r["sent"] for r in runs)
        acked_count = sum(len(v) for r in runs for v in r["acked"].values())
        result = {
            "target_delivered_per_s": delivered_rate,
            "sends_per_s": round(sends_per_s, 2),
            "rooms": self.rooms_count,
            "members_per_room": self.members,
            "users_per_room": self.users,
            "duration_s": duration,
            "sent": sent,
            "acked": acked_count,
            "delivered": sum(t["delivered"] for t in tallies),
            "lost": sum(t["lost"] for t in tallies),
            "duplicated": sum(t["duplicated"] for t in tallies),
            "out_of_order": sum(t["out_of_order"] for t in tallies),
            "send_errors": sum(r["send_errors"] for r in runs),
            "unacked": sum(r["unacked"] for r in runs),
            "error_codes": dict(errors),
            "closed_members": sum(t["closed_members"] for t in tallies),
            "outside_range": sum(t["outside_range"] for t in tallies),
            "ranges": ranges,
            "cores_used": meter.cores,
            **percentiles_ms(latency),
            **{f"ack_{k}": v for k, v in percentiles_ms(ack_latency).items()},
        }
        result["delivered_per_s"] = round(result["delivered"] / duration)
        expected = int(sends_per_s / len(self.pool) * duration) * len(self.pool)
        reasons = []
        if result["lost"] or result["duplicated"] or result["out_of_order"]:
            reasons.append("lost/duplicated/out-of-order")
        if result["send_errors"] or result["unacked"] or sent < expected:
            reasons.append("send errors or unacked")
        if result["p99_ms"] is None or result["p99_ms"] >= P99_LIMIT_MS:
            reasons.append(f"p99 ≥ {P99_LIMIT_MS:.0f} ms")
        result["pass"] = not reasons
        result["why_not"] = ", ".join(reasons)
        if keep_ack_times:
            result["_ack_times"] = [a for r in runs for a in r["ack_times"]]
        return result

    def close(self) -> None:
        self.pool.each("close")
        fixtures.close_old_rooms([slug for slug, _ in self.rooms])


def new_shape(
    plan, pool, population, cluster: Cluster, rooms: int, members: int, tag: str, ports=None, users=None
) -> Shape:
    shape = Shape(plan, pool, population, ports or cluster.ports, rooms, members, tag, users)
    shape.cpu_groups = {"web": web_pids(cluster), "worker": [w.pid for w in cluster.workers]}
    if plan.redis_pid:
        shape.cpu_groups["redis"] = [plan.redis_pid]
    return shape


def ladder(shape: Shape, plan: Plan, rates: list[int], fixed: list[int], pids: list[int], name: str) -> dict:
    """Step the delivered rate up; keep going past a failure only for the fixed report points."""
    steps = []
    capacity = 0
    failed = False
    for rate in rates:
        if failed and rate not in fixed:
            continue
        if failed and any(s.get("p99_ms") is None or s["p99_ms"] > 2000 for s in steps[-1:]):
            steps.append({"target_delivered_per_s": rate, "skipped": "saturated at a lower rate", "pass": False})
            continue
        wait_idle(pids)
        step = shape.step(rate, duration=plan.duration)
        steps.append(step)
        plan.log(f"    {name} {rate:>6}/s: {step_line(step)}")
        if step["pass"] and not failed:
            capacity = rate
        else:
            failed = True
        if failed and not any(r in fixed for r in rates if r > rate):
            break
    return {"steps": steps, "capacity_delivered_per_s": capacity, "capacity_reached_top": not failed}


def step_line(step: dict) -> str:
    if "skipped" in step:
        return step["skipped"]
    return (
        f"delivered {step['delivered_per_s']:>6}/s p50 {step['p50_ms']} p99 {step['p99_ms']} max {step['max_ms']} ms"
        f" lost {step['lost']} dup {step['duplicated']} ooo {step['out_of_order']}"
        f" errors {step['send_errors']}+{step['unacked']} {'ok' if step['pass'] else 'FAIL: ' + step['why_not']}"
        f" | cores: {' '.join(f'{k} {v}' for k, v in step.get('cores_used', {}).items())}"
    )


# --- sections ---------------------------------------------------------------------


def section_latency(plan, config, cluster, pool, population) -> dict:
    rooms, members = plan.latency_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"lat {config.key}")
    connect = shape.connect()
    plan.log(f"    {connect['connections']} members connected in {connect['seconds']} s")
    try:
        result = ladder(shape, plan, plan.latency_ladder, plan.fixed_rates, web_pids(cluster), "10x20")
    finally:
        shape.close()
    return {"shape": f"{rooms} rooms x {members} members", "connect": connect, **result}


def section_fanout(plan, config, cluster, pool, population) -> dict:
    rooms, members = plan.fanout_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"fan {config.key}", users=plan.fanout_users)
    connect = shape.connect(concurrency=20)
    plan.log(f"    {connect['connections']} members connected in {connect['seconds']} s")
    try:
        wait_idle(web_pids(cluster), timeout=30)
        result = ladder(shape, plan, plan.fanout_ladder, [], web_pids(cluster), f"{rooms}x{members}")
    finally:
        shape.close()
    return {
        "shape": f"{rooms} room x {members} members ({shape.users} users)",
        "users": shape.users,
        "connect": connect,
        **result,
    }


class RowWatcher(threading.Thread):
    """Polls PostgreSQL for the highest persisted seq of each room: (seq, when) timelines."""

    def __init__(self, dsn: str, rooms: dict[int, str], interval: float = 0.02):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rooms = rooms
        self.interval = interval
        self.timeline: dict[str, tuple[list[int], list[int]]] = {slug: ([], []) for slug in rooms.values()}
        self.stopped = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            ids = list(self.rooms)
            while not self.stopped.is_set():
                rows = conn.execute(
                    "SELECT room_id, MAX(seq) FROM messaging_message WHERE room_id = ANY(%s) GROUP BY room_id", (ids,)
                ).fetchall()
                now = time.monotonic_ns()
                for room_id, top in rows:
                    seqs, times = self.timeline[self.rooms[room_id]]
                    if not seqs or top > seqs[-1]:
                        seqs.append(top)
                        times.append(now)
                time.sleep(self.interval)

    def persisted_at(self, slug: str, seq: int) -> int | None:
        seqs, times = self.timeline[slug]
        i = bisect.bisect_left(seqs, seq)
        return times[i] if i < len(seqs) else None


def section_persistence(plan, config, cluster, pool, population) -> dict:
    rooms, members = plan.persistence_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"per {config.key}")
    shape.connect()
    ids = fixtures.room_ids([slug for slug, _ in shape.rooms])
    watcher = RowWatcher(plan.database_url, {pk: slug for slug, pk in ids.items()})
    watcher.start()
    try:
        wait_idle(web_pids(cluster))
        step = shape.step(plan.persistence_rate * members, duration=plan.duration, keep_ack_times=True)
        acks = step.pop("_ack_times")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(watcher.persisted_at(s, q) is None for s, q, _ in acks[-50:]):
            time.sleep(0.1)
        time.sleep(0.2)
    finally:
        watcher.stopped.set()
        watcher.join()
        shape.close()
    lags = array("q")
    missing = 0
    for slug, seq, acked_at in acks:
        at = watcher.persisted_at(slug, seq)
        if at is None:
            missing += 1
        else:
            lags.append(max(0, at - acked_at))
    figures = percentiles_ms(lags)
    plan.log(
        f"    ack → row in PostgreSQL at {plan.persistence_rate}/s: p50 {figures['p50_ms']} p99 {figures['p99_ms']}"
        f" max {figures['max_ms']} ms, {missing} not persisted within 30 s; delivery: {step_line(step)}"
    )
    return {
        "sends_per_s": plan.persistence_rate,
        "shape": f"{rooms} rooms x {members} members",
        "acked": len(acks),
        "not_persisted_within_30s": missing,
        "poll_interval_ms": watcher.interval * 1000,
        **{f"lag_{k}": v for k, v in figures.items()},
        "delivery": step,
    }


def section_memory(plan, config, cluster, pool, population, connections: int | None = None) -> dict:
    """RSS growth of a fresh web process over ``memory_connections`` idle subscribed connections."""
    port = cluster.ports[0]
    pid = cluster.webs[port].pid
    room_size = plan.memory_room_size
    warm = Shape(plan, pool, population, [port], max(1, plan.memory_warmup // room_size), room_size, f"mw {config.key}")
    warm_connect = warm.connect()
    wait_idle([pid], timeout=30)
    time.sleep(1)
    before = rss_kib(pid)
    count = plan.memory_connections if connections is None else connections
    idle = Shape(plan, pool, population, [port], max(1, count // room_size), room_size, f"mem {config.key}")
    connect = idle.connect(budget=plan.memory_budget)
    wait_idle([pid], timeout=60)
    time.sleep(2)
    after = rss_kib(pid)
    connected = connect["connections"]
    per = (after - before) / connected if connected else None
    plan.log(
        f"    {connected} idle connections ({connect['failed']} failed, {connect['skipped_after_budget']} not tried"
        f" within {plan.memory_budget:g} s) in {connect['seconds']} s:"
        f" RSS {before / 1024:.1f} → {after / 1024:.1f} MiB, {per:.1f} KiB per connection"
    )
    pool.each("close")
    fixtures.close_old_rooms([slug for slug, _ in idle.rooms + warm.rooms])
    return {
        "connections": connected,
        "failed": connect["failed"],
        "skipped_after_budget": connect["skipped_after_budget"],
        "asked": count,
        "failures": connect["failures"],
        "connect_seconds": connect["seconds"],
        "connections_per_s": round(connected / connect["seconds"], 1) if connect["seconds"] else None,
        "warmup_connections": warm_connect["connections"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round(per, 2) if per is not None else None,
    }


def section_profile(plan, config, cluster, pool, population) -> dict:
    """py-spy on the (first) web process while 10 rooms x 20 members take ``profile_rate`` delivered/s."""
    from bench.profile import pyspy_path, summarise

    spy = pyspy_path()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    rooms, members = plan.latency_shape
    shape = new_shape(plan, pool, population, cluster, rooms, members, f"prof {config.key}", cluster.ports[:1])
    shape.connect()
    out = Path(tempfile.mkdtemp(prefix="pubsub-bench-prof-")) / "web.raw"
    pid = cluster.ports and cluster.webs[cluster.ports[0]].pid
    try:
        wait_idle([pid])
        seconds = plan.profile_seconds
        spy_proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
             "--format", "raw", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.5)
        step = shape.step(plan.profile_rate, duration=seconds)
        _, err = spy_proc.communicate(timeout=60)
    finally:
        shape.close()
    if not out.exists():
        return {"skipped": f"py-spy produced nothing: {err.decode(errors='replace')[-300:]}"}
    summary = summarise(out.read_text())
    summary["delivery"] = step
    summary["raw_file"] = str(out)
    plan.log(f"    profiled {summary['samples']} samples under load ({step_line(step)})")
    return summary


SECTIONS = {
    "latency": section_latency,
    "fanout": section_fanout,
    "persistence": section_persistence,
    "memory": section_memory,
    "profile": section_profile,
}


def web_pids(cluster: Cluster) -> list[int]:
    return [p.pid for p in cluster.webs.values()]


# --- the whole run ------------------------------------------------------------------


def run(plan: Plan) -> dict:
    raise_open_files_limit()
    plan.log(f"database {fixtures.database_name(plan.database_url)} (recreated), redis {plan.redis_url} (flushed)")
    fixtures.recreate_database(plan.database_url)
    fixtures.setup_django(plan.database_url, plan.redis_url)
    import redis

    client = redis.Redis.from_url(plan.redis_url)
    client.flushdb()
    if client.connection_pool.connection_kwargs.get("host") in ("127.0.0.1", "localhost"):
        plan.redis_pid = int(client.info("server")["process_id"])
    population = fixtures.Population()
    results: dict = {"configs": {}}
    started = time.monotonic()
    with ClientPool(plan.clients) as pool:
        for config, sections in plan.configs:
            plan.log(f"== {config.label}: {', '.join(sections)}")
            config_results: dict = {"label": config.label, **config.__dict__, "web_command": config.web_command}
            for section in sections:
                # "memory@1000": a section with an argument (here: how many idle connections)
                name, _, arg = section.partition("@")
                extra = {"connections": int(arg)} if arg else {}
                section_started = time.monotonic()
                # memory wants a fresh web process, without the earlier sections' garbage
                quiet = wait_for_quiet_machine(plan.quiet_wait, plan.log)
                cluster = start_servers(plan, config, worker=name != "memory")
                try:
                    plan.log(f"  {name} (web on ports {', '.join(map(str, cluster.ports))})")
                    config_results[name] = SECTIONS[name](plan, config, cluster, pool, population, **extra)
                    config_results[name]["machine_before"] = quiet
                except Exception as error:
                    plan.log(f"  {name} failed: {type(error).__name__}: {error}")
                    plan.log(cluster.logs()[-3000:])
                    config_results[name] = {"error": f"{type(error).__name__}: {error}"}
                    pool.each("close")
                finally:
                    cluster.stop()
                config_results[name]["seconds"] = round(time.monotonic() - section_started, 1)
            results["configs"][config.key] = config_results
    results["seconds"] = round(time.monotonic() - started, 1)
    return results
