"""The orchestrator: starts the servers it measures, drives the client processes, computes figures.

Sections (``--only``), each on freshly started servers (one web process unless the
configuration says otherwise, and one rq worker: persistence on):

- ``latency``      10 rooms x 20 members, delivered rate stepped up (1,000 ... 80,000/s):
                   p50/p99/max, lost/dup/out of order, web CPU per delivered copy; the
                   shape's capacity is the highest step with p99 < 100 ms and nothing lost
- ``fanout``       1 room x 1,000 members, stepped up the same way
- ``spectators``   the same room with 5,000 more connections held (spectators: subscribed,
                   never sending), stepped up: no one cut off, nothing lost
- ``handshake``    1,000 clients connect and subscribe, all at once, trying again after a
                   1013 close as the browser does: first cold (none of them a member of its
                   public room yet: each first subscribe joins it, a write), then warm (the
                   same clients again, members now): time to all in, per second per web
                   process, retries, and cold over warm
- ``storm``        2,000 subscribed clients lose their connections at once and all come
                   back (browser backoff, resubscribe with ``since``): time until all are
                   back, retries; then a short step checks that every one of them receives
- ``persistence``  1,500 messages a second: time from ack to the row in PostgreSQL
- ``memory``       RSS growth of a fresh web process over 5,000 idle subscribed connections
- ``profile``      py-spy on the web process during a 10 x 20 step: where the time goes
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

from bench import fixtures, http_api
from bench.loadgen import client_main, raise_open_files_limit
from pubsub_site.cluster import Cluster, descendants, free_port

ROOT = Path(__file__).resolve().parent.parent
P99_LIMIT_MS = 100.0
# High enough that no benchmark member reaches it: 150 sends a second per user at most in
# `persistence`, and the closed loop of `api --quick`, one user in two rooms, near 2,000 (it
# passed 1,000 a room). The limit's list of a user's send times (LPUSH and LTRIM to the limit,
# gone a second after their last send) holds at most what they sent since they last paused for
# a second: within a step of the ladders, far below 5,000.
BENCH_SEND_LIMIT = "5000/second"
CHANNEL_LAYER = "pubsub"  # the one channel layer the site has (CHANNEL_LAYER=core is gone)

_UVICORN = (
    "uvicorn {app} --host 127.0.0.1 --port $PORT --no-access-log --log-level warning --lifespan off"
    " --loop uvloop --http httptools --ws {ws} --ws-per-message-deflate false --ws-max-size 65536"
)
SITE_APP = "pubsub_site.asgi:application"
BARE_APP = "bench.bare:app"


@dataclass(frozen=True)
class Server:
    label: str
    command: str
    site: bool = True  # False: the bare reference app (bench/bare.py), not the project


# The servers measured side by side. Each command is run as is (``$PORT`` filled in).
SERVERS: dict[str, Server] = {
    "uvicorn": Server("site on uvicorn (websockets-sansio)", _UVICORN.format(app=SITE_APP, ws="websockets-sansio")),
    "daphne": Server("site on daphne", f"daphne -b 127.0.0.1 -p $PORT {SITE_APP}"),
    "uvicorn-websockets": Server("site on uvicorn (websockets)", _UVICORN.format(app=SITE_APP, ws="websockets")),
    # granian: the ASGI interface without lifespan (Channels' router has no lifespan
    # handler), WebSockets on (its default), one worker process, uvloop.
    "granian": Server(
        "site on granian",
        f"granian --interface asginl --ws --host 127.0.0.1 --port $PORT --workers 1 --runtime-threads 1"
        f" --loop uvloop --no-access-log --log-level warning {SITE_APP}",
    ),
    "bare": Server(
        "bare ASGI reference on uvicorn (websockets-sansio)",
        _UVICORN.format(app=BARE_APP, ws="websockets-sansio"),
        site=False,
    ),
}
REFERENCE = "bare"


@dataclass(frozen=True)
class ServerConfig:
    server: str  # a key of SERVERS
    webs: int = 1
    # A replica of the benchmark's Redis (a redis-server of its own on a free port) and
    # REDIS_WAIT_REPLICAS=1 for the site's processes: an ack waits for the replica (WAIT).
    replica: bool = False

    @property
    def key(self) -> str:
        return f"{self.server}-{self.webs}p" + ("-replica" if self.replica else "")

    @property
    def label(self) -> str:
        return (
            SERVERS[self.server].label
            + (f" ({self.webs} procs)" if self.webs > 1 else "")
            + (", acks wait for a replica (WAIT 1)" if self.replica else "")
        )

    @property
    def web_command(self) -> str:
        return SERVERS[self.server].command

    @property
    def is_reference(self) -> bool:
        return not SERVERS[self.server].site


@dataclass
class Plan:
    database_url: str
    redis_url: str
    configs: list[tuple[ServerConfig, list[str]]]  # each config and the sections it runs
    duration: float = 5.0
    drain_timeout: float = 5.0  # give up draining after this long with nothing arriving (3x at most)
    clients: int = 2
    latency_shape: tuple[int, int] = (10, 20)
    latency_ladder: list[int] = field(
        default_factory=lambda: [1000, 2000, 5000, 10000, 15000, 20000, 30000, 40000, 50000, 60000, 80000]
    )
    fixed_rates: list[int] = field(default_factory=lambda: [5000, 10000, 20000, 30000, 60000])
    fanout_shape: tuple[int, int] = (1, 1000)
    # Distinct users among the 1,000 members (the others are more tabs of the same users):
    # each user's first tab broadcasts a presence join to the whole room, so 1,000 distinct
    # users cost 1,000 x ~500 presence frames before the first message.
    fanout_users: int = 50
    fanout_ladder: list[int] = field(
        default_factory=lambda: [1000, 2000, 5000, 10000, 20000, 30000, 40000, 60000, 80000]
    )
    # The fan-out room again, with this many more connections that only receive.
    spectators: int = 5000
    spectator_users: int = 100
    # delivered copies a second over every connection of the room (members + spectators)
    spectators_ladder: list[int] = field(default_factory=lambda: [6000, 12000, 30000, 60000])
    handshake_clients: int = 1000
    handshake_concurrency: int | None = None  # handshakes at once, over every client process (None: all)
    handshake_room_size: int = 20
    handshake_target_per_s: float = 1000.0  # per web process, cold and warm
    handshake_cold_ratio: float = 2.0  # cold (first subscribes join their rooms) at most this x warm
    storm_clients: int = 2000
    storm_room_size: int = 20
    storm_target_s: float = 10.0
    storm_check_rate: int = 4000  # delivered/s of the step after the storm
    persistence_rate: int = 1500
    api_connections: int = 16  # the "api" section's publishers (bench.http_api), one room each
    persistence_shape: tuple[int, int] = (10, 1)
    memory_connections: int = 5000
    memory_room_size: int = 20
    memory_warmup: int = 200
    connect_budget: float = 300.0  # seconds to open many connections; those not opened by then are skipped
    profile_rate: int = 10000
    profile_seconds: float = 10.0
    quiet_wait: float = 20.0  # seconds to wait for other work on the machine to calm down before a section
    log: object = print
    redis_pid: int | None = None


# --- client processes -----------------------------------------------------------


class ClientPool:
    """``count`` load-generator processes, each with its own uvloop (``target``: their entry point)."""

    def __init__(self, count: int, target=client_main):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=target, args=(child,), daemon=True)
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


def server_env(plan: Plan) -> dict[str, str]:
    return {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": plan.database_url,
        "REDIS_URL": plan.redis_url,
        "ROOM_REDIS_URLS": plan.redis_url,
        "CHANNEL_REDIS_URLS": plan.redis_url,
        "CHANNEL_LAYER": CHANNEL_LAYER,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # The per-user send limit (5 a second) would refuse the benchmark's members, who send
        # faster than people do: it still runs on every send, but with a ceiling nobody reaches.
        "WS_RATE_LIMIT_SEND": BENCH_SEND_LIMIT,
        # The same for the API's per-token limit (the "api" section's one token publishes for all).
        "API_RATE_LIMIT": "10000000/minute",
    }


@dataclass
class BenchCluster(Cluster):
    """The servers of one section, and the Redis replica it started, if any."""

    replica: subprocess.Popen | None = None

    def stop(self, *, graceful: bool = True) -> None:
        super().stop(graceful=graceful)
        if self.replica is not None and self.replica.poll() is None:
            self.replica.terminate()
            try:
                self.replica.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.replica.kill()
                self.replica.wait()
        self.replica = None


def start_replica(plan: Plan, log_dir: Path, timeout: float = 60) -> subprocess.Popen:
    """A redis-server replicating the benchmark's Redis, on a free port, no persistence of its
    own; returns once the primary counts it in WAIT (its copy loaded and acknowledged)."""
    import redis

    primary = redis.Redis.from_url(plan.redis_url)
    address = primary.connection_pool.connection_kwargs
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(log_dir), "--logfile", str(log_dir / "redis-replica.log"),
            "--replicaof", address.get("host", "127.0.0.1"), str(address.get("port", 6379)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while primary.wait(1, 200) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the replica on port {port} did not catch up with {plan.redis_url}")
    return process


def start_servers(plan: Plan, config: ServerConfig, *, worker: bool = True) -> Cluster:
    env = server_env(plan)
    if config.replica:
        env["REDIS_WAIT_REPLICAS"] = "1"
    cluster = BenchCluster(
        env=env,
        web_command=config.web_command,
        log_dir=Path(tempfile.mkdtemp(prefix=f"pubsub-bench-{config.key}-")),
    )
    try:
        if config.replica:
            cluster.replica = start_replica(plan, cluster.log_dir)
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


# --- a shape of rooms and members under load -------------------------------------


class Shape:
    """Rooms x members connected through the client pool, and the seq range each room had.

    ``members`` connections per room send and receive; ``spectators`` more per room only
    receive. ``users`` / ``spectator_users``: distinct users among them (the others are
    more tabs of the same users). ``members_join=False``: only each room's creator is a
    member up front; the others join at their first subscribe.
    """

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
        spectators: int = 0,
        spectator_users: int = 0,
        members_join: bool = True,
    ):
        self.plan = plan
        self.pool = pool
        self.rooms_count = rooms
        self.senders = members
        self.spectators = spectators
        self.members = members + spectators  # connections per room
        self.users = min(users or members, members) + (min(spectator_users or spectators, spectators))
        self.rooms = fixtures.make_rooms(
            population, rooms=rooms, members=self.members, tag=tag, users=self.users, members_join=members_join
        )
        self.top = {slug: 0 for slug, _ in self.rooms}
        self.ports = ports
        self.cpu_groups: dict[str, list[int]] = {}

    def specs(self) -> list[list[dict]]:
        per_client: list[list[dict]] = [[] for _ in range(len(self.pool))]
        n = 0
        for slug, sessions in self.rooms:
            for i, session in enumerate(sessions):
                spec = {"port": self.ports[n % len(self.ports)], "session": session, "room": slug,
                        "sends": i < self.senders}  # fmt: skip
                per_client[n % len(self.pool)].append(spec)
                n += 1
        return per_client

    def connect(self, concurrency: int = 20, budget: float | None = None) -> dict:
        """Open every connection, ``concurrency`` handshakes at once over all client processes."""
        per_client = self.specs()
        each = max(1, concurrency // len(self.pool))
        started = time.monotonic()
        replies = self.pool.call(
            "connect",
            [{"specs": specs, "concurrency": each, "timeout": 60, "budget": budget} for specs in per_client],
        )
        return self._joined(replies, time.monotonic() - started)

    def reconnect_storm(self) -> dict:
        """Every connection dropped at once, then back (bench.loadgen.Agent.reconnect)."""
        start_at = time.monotonic() + 0.3
        replies = self.pool.each("reconnect", start_at=start_at, handshake_timeout=60)
        return self._joined(replies, max(r["seconds"] for r in replies))

    def _joined(self, replies: list[dict], seconds: float) -> dict:
        connected = sum(r["connected"] for r in replies)
        return {
            "asked": sum(r["asked"] for r in replies),
            "connections": connected,
            "failed": sum(r["failed"] for r in replies),
            "skipped_after_budget": sum(r.get("skipped", 0) for r in replies),
            "failures": [f for r in replies for f in r["failures"]][:5],
            "retries_1013": sum(r["retries_1013"] for r in replies),
            "retries_other": sum(r["retries_other"] for r in replies),
            "retry_reasons": dict(sum((Counter(r["retry_reasons"]) for r in replies), Counter()).most_common(5)),
            "seconds": round(seconds, 2),
            "per_s": round(connected / seconds, 1) if seconds else None,
            "each": seconds_percentiles([x for r in replies for x in r["seconds_each"]]),
        }

    def step(
        self,
        delivered_rate: int,
        *,
        duration: float,
        keep_ack_times: bool = False,
        p99_limit: float | None = P99_LIMIT_MS,
    ) -> dict:
        """Send at ``delivered_rate / members`` messages a second for ``duration`` s; measure.

        The step passes when every send is acked, nothing is lost, duplicated or out of
        order, no connection is cut off and (unless ``p99_limit`` is None) p99 < ``p99_limit``.
        """
        sends_per_s = delivered_rate / self.members
        clients = len(self.pool)
        total = round(sends_per_s * duration)  # the sends of the step, shared out exactly
        shares = [total // clients + (i < total % clients) for i in range(clients)]
        start_at = time.monotonic() + 0.3
        with CpuMeter({**self.cpu_groups, "clients": self.pool.pids}) as meter:
            common = {
                "duration": duration,
                "start_at": start_at,
                "senders": None,
                "drain_timeout": self.plan.drain_timeout,
                "keep_ack_times": keep_ack_times,
            }
            runs = self.pool.call(
                "run",
                [{**common, "rate": share / duration, "total": share} for share in shares],
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
            "connections": sum(t["connections"] for t in tallies),
            "closed_members": sum(t["closed_members"] for t in tallies),
            "outside_range": sum(t["outside_range"] for t in tallies),
            "foreign": sum(r["foreign"] for r in runs),
            "ranges": ranges,
            "cores_used": meter.cores,
            **percentiles_ms(latency),
            **{f"ack_{k}": v for k, v in percentiles_ms(ack_latency).items()},
        }
        result["delivered_per_s"] = round(result["delivered"] / duration)
        # Web CPU per delivered copy: the web processes' CPU seconds over the step (sending,
        # then the drain) over the copies delivered, in microseconds.
        web_s = meter.seconds.get("web")
        result["web_cpu_s"] = web_s
        result["web_us_per_copy"] = round(web_s / result["delivered"] * 1e6, 1) if result["delivered"] else None
        expected = total
        reasons = []
        if result["lost"] or result["duplicated"] or result["out_of_order"]:
            reasons.append("lost/duplicated/out-of-order")
        if result["foreign"]:
            reasons.append(f"{result['foreign']} frames of another run")
        if result["closed_members"]:
            reasons.append(f"{result['closed_members']} connections cut off")
        if result["send_errors"] or result["unacked"] or sent < expected:
            reasons.append("send errors or unacked")
        if result["p99_ms"] is None or (p99_limit is not None and result["p99_ms"] >= p99_limit):
            reasons.append(f"p99 ≥ {p99_limit:.0f} ms" if result["p99_ms"] is not None else "nothing delivered")
        result["p99_limit_ms"] = p99_limit
        result["pass"] = not reasons
        result["why_not"] = ", ".join(reasons)
        if keep_ack_times:
            result["_ack_times"] = [a for r in runs for a in r["ack_times"]]
        return result

    def close(self) -> None:
        self.pool.each("close")
        fixtures.close_old_rooms([slug for slug, _ in self.rooms])


def new_shape(
    plan, pool, population, cluster: Cluster, rooms: int, members: int, tag: str, ports=None, users=None, **extra
) -> Shape:
    shape = Shape(plan, pool, population, ports or cluster.ports, rooms, members, tag, users, **extra)
    shape.cpu_groups = {"web": web_pids(cluster), "worker": [w.pid for w in cluster.workers]}
    if plan.redis_pid:
        shape.cpu_groups["redis"] = [plan.redis_pid]
    return shape


def ladder(
    shape: Shape,
    plan: Plan,
    rates: list[int],
    fixed: list[int],
    pids: list[int],
    name: str,
    p99_limit: float | None = P99_LIMIT_MS,
) -> dict:
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
        step = shape.step(rate, duration=plan.duration, p99_limit=p99_limit)
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
        f" | web {step.get('web_us_per_copy')} µs/copy | cores: "
        + " ".join(f"{k} {v}" for k, v in step.get("cores_used", {}).items())
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
    connect = shape.connect(concurrency=50, budget=plan.connect_budget)
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


def section_spectators(plan, config, cluster, pool, population) -> dict:
    """The fan-out room with ``plan.spectators`` more connections that only receive: no one cut off."""
    rooms, members = plan.fanout_shape
    shape = new_shape(
        plan, pool, population, cluster, rooms, members, f"spec {config.key}", users=plan.fanout_users,
        spectators=plan.spectators, spectator_users=plan.spectator_users,
    )  # fmt: skip
    connect = shape.connect(concurrency=50, budget=plan.connect_budget)
    plan.log(
        f"    {connect['connections']} of {connect['asked']} connections ({members} members +"
        f" {plan.spectators} spectators a room) in {connect['seconds']} s, {connect['failed']} failed,"
        f" {connect['skipped_after_budget']} not tried within {plan.connect_budget:g} s"
    )
    try:
        wait_idle(web_pids(cluster), timeout=30)
        # Judged on nothing lost and no one cut off, not on latency: one send is a burst of
        # 6,000 copies, and on 2 cores the last of them arrives ~100-200 ms after the first.
        result = ladder(
            shape, plan, plan.spectators_ladder, [], web_pids(cluster), f"{rooms}x{shape.members}", p99_limit=None
        )
    finally:
        shape.close()
    steps = [s for s in result["steps"] if "skipped" not in s]
    return {
        "shape": f"{rooms} room x {members} members + {plan.spectators} spectators ({shape.users} users)",
        "members": members,
        "spectators": plan.spectators,
        "users": shape.users,
        "connect": connect,
        "cut_off": max((s["closed_members"] for s in steps), default=0),
        **result,
    }


def warm_up_processes(plan, pool, population, cluster: Cluster, tag: str, per_process: int = 40) -> None:
    """A few members of other rooms connect and subscribe to every web process, then leave:
    a new process's first handshakes open its connections to PostgreSQL and Redis and fill
    its caches (prepared statements, Django's, the code's), which the next thousand, cold
    or warm, should not be charged for."""
    webs = len(cluster.ports)
    shape = new_shape(plan, pool, population, cluster, webs * 2, per_process // 2, tag)
    try:
        shape.connect(concurrency=per_process, budget=plan.connect_budget)
        pool.each("close")
    finally:
        shape.close()


def section_handshake(plan, config, cluster, pool, population) -> dict:
    """``handshake_clients`` clients connect and subscribe, ``handshake_concurrency`` at a time
    (all at once by default): cold, every client a user who is not yet a member of its public
    room (its first subscribe joins it: a write), then warm, the same clients again."""
    size = plan.handshake_room_size
    rooms = max(1, plan.handshake_clients // size)
    concurrency = plan.handshake_concurrency or plan.handshake_clients
    warm_up_processes(plan, pool, population, cluster, f"hs warm-up {config.key}")
    shape = new_shape(plan, pool, population, cluster, rooms, size, f"hs {config.key}", members_join=False)
    webs = len(cluster.ports)
    runs = {}
    try:
        for phase in ("cold", "warm"):
            wait_idle(web_pids(cluster), timeout=30)
            with CpuMeter({"web": web_pids(cluster)}) as meter:
                connect = shape.connect(concurrency=concurrency, budget=plan.connect_budget)
            pool.each("close")  # not shape.close(): the memberships the cold run made stay
            per_proc = round(connect["connections"] / connect["seconds"] / webs, 1) if connect["seconds"] else None
            connect["per_s_per_web_process"] = per_proc
            connect["web_cpu_s"] = meter.seconds["web"]
            connect["web_ms_per_handshake"] = (
                round(meter.seconds["web"] / connect["connections"] * 1000, 2) if connect["connections"] else None
            )
            connect["pass"] = (
                connect["connections"] == connect["asked"] and (per_proc or 0) >= plan.handshake_target_per_s
            )
            runs[phase] = connect
            plan.log(
                f"    {phase}: {connect['connections']} of {connect['asked']} in {connect['seconds']} s"
                f" ({per_proc}/s per web process), {connect['failed']} failed, retries: {connect['retries_1013']}"
                f" after 1013, {connect['retries_other']} other {connect['retry_reasons'] or ''};"
                f" each: p50 {connect['each']['p50_s']} p99 {connect['each']['p99_s']} s;"
                f" web {meter.seconds['web']} CPU s {'ok' if connect['pass'] else 'FAIL'}"
            )
    finally:
        shape.close()
    cold, warm = runs["cold"], runs["warm"]
    ratio = round(cold["seconds"] / warm["seconds"], 2) if warm["seconds"] else None
    ratio_ok = ratio is not None and ratio <= plan.handshake_cold_ratio
    plan.log(f"    cold / warm: {ratio} (target ≤ {plan.handshake_cold_ratio:g}) {'ok' if ratio_ok else 'FAIL'}")
    # The warm run's figures at the top (what the section measured before it had a cold run).
    return {
        "clients": plan.handshake_clients,
        "concurrency": concurrency,
        "web_processes": webs,
        **warm,
        "cold": cold,
        "warm": warm,
        "cold_vs_warm": ratio,
        "pass": cold["pass"] and warm["pass"] and ratio_ok,
    }


def section_storm(plan, config, cluster, pool, population) -> dict:
    """``storm_clients`` subscribed clients lose their connections at once and come back."""
    size = plan.storm_room_size
    rooms = max(1, plan.storm_clients // size)
    shape = new_shape(plan, pool, population, cluster, rooms, size, f"storm {config.key}")
    try:
        before = shape.connect(concurrency=50, budget=plan.connect_budget)
        plan.log(f"    {before['connections']} clients connected in {before['seconds']} s; dropping them all")
        wait_idle(web_pids(cluster), timeout=30)
        with CpuMeter({"web": web_pids(cluster)}) as meter:
            storm = shape.reconnect_storm()
        wait_idle(web_pids(cluster), timeout=30)
        check = shape.step(plan.storm_check_rate, duration=plan.duration)
    finally:
        shape.close()
    back = storm["connections"] == before["connections"] and storm["failed"] == 0
    ok = back and storm["seconds"] < plan.storm_target_s and check["pass"]
    plan.log(
        f"    {storm['connections']} of {storm['asked']} back in {storm['seconds']} s, {storm['failed']} failed,"
        f" retries: {storm['retries_1013']} after 1013, {storm['retries_other']} other {storm['retry_reasons'] or ''};"
        f" each: p50 {storm['each']['p50_s']} p99 {storm['each']['p99_s']} s {'ok' if ok else 'FAIL'}"
    )
    plan.log(f"    then {plan.storm_check_rate}/s: {step_line(check)}")
    return {
        "clients": plan.storm_clients,
        "before": before,
        "web_cpu_s": meter.seconds["web"],
        "pass": ok,
        **storm,
        "check": check,
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
    # One user per connection, each a member of the one room it is in (users of its own, not
    # the earlier sections'): the figure does not depend on what ran before. What a further
    # membership adds is in docs/benchmarks.md.
    count = plan.memory_connections if connections is None else connections
    population = fixtures.Population()
    population.grow(plan.memory_warmup + count)
    warm = Shape(plan, pool, population, [port], max(1, plan.memory_warmup // room_size), room_size, f"mw {config.key}")
    warm_connect = warm.connect()
    pids = web_pids(cluster)
    wait_idle(pids, timeout=30)
    time.sleep(1)
    before = rss_kib(pid)
    population.users = population.users[plan.memory_warmup :]
    population.sessions = population.sessions[plan.memory_warmup :]
    idle = Shape(plan, pool, population, [port], max(1, count // room_size), room_size, f"mem {config.key}")
    connect = idle.connect(concurrency=50, budget=plan.connect_budget)
    wait_idle(pids, timeout=60)
    time.sleep(2)
    after = rss_kib(pid)
    connected = connect["connections"]
    per = (after - before) / connected if connected else None
    plan.log(
        f"    {connected} idle connections ({connect['failed']} failed, {connect['skipped_after_budget']} not tried"
        f" within {plan.connect_budget:g} s) in {connect['seconds']} s:"
        f" RSS {before / 1024:.1f} → {after / 1024:.1f} MiB, {'-' if per is None else f'{per:.1f}'} KiB per connection"
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
            [spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)), "--rate", "100",
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
    "spectators": section_spectators,
    "handshake": section_handshake,
    "storm": section_storm,
    "persistence": section_persistence,
    "memory": section_memory,
    "profile": section_profile,
    "api": http_api.section_api,
}


def web_pids(cluster: Cluster) -> list[int]:
    """The web processes and the processes they started (granian's worker)."""
    return [pid for p in cluster.webs.values() for pid in (p.pid, *descendants(p.pid))]


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
            config_results: dict = {
                "label": config.label,
                **config.__dict__,
                "reference": config.is_reference,
                "web_command": config.web_command,
            }
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
                config_results[name]["section_seconds"] = round(time.monotonic() - section_started, 1)
            results["configs"][config.key] = config_results
    results["seconds"] = round(time.monotonic() - started, 1)
    return results
