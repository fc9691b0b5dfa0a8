"""python -m bench.scale: connections at scale (``make bench-scale``): a benchmark, not a test.

Three runs, each on web processes it starts (``pubsub_site.cluster.Cluster``, the bench's
uvicorn command, on consecutive free ports) with one rq worker (persistence on), against a
database (``pubsub_bench_scale``, recreated) and a Redis database (10, flushed) of its own,
driven by load-generator processes (``bench.scaleload``: uvloop + picows, each from a
source address of its own, 127.0.0.2, .3, …):

- ``scale``  ``--sockets`` (default 100,000) signed-in users, one socket each, each
             subscribed to one room (rooms of 20, plus ``--big-rooms`` rooms of
             ``--big-room-size``): time to connect them all, web memory per socket (the web
             processes' RSS growth over the sockets), web CPU per handshake and per idle
             socket, then a trickle (``--trickle-share`` of the users, default 1%, sending
             one message a minute, for ``--trickle-seconds``): p99 send → receipt and lost;
             the load generators' own CPU beside every figure.
- ``storm``  on the same sockets: SIGKILL web processes holding ``--storm-sockets`` (default
             50,000) in all while the trickle goes on; every client comes back as the browser
             does (backoff with jitter, the next server of its list, resubscribe with
             ``since``): time until all are back, then lost/duplicated over the whole window.
             A process may open 20,000 files here, so the run starts enough web processes that
             the survivors can hold every socket (100,000: 14 processes of ~7,150, 7 killed).
- ``soak``   ``--soak-sockets`` (default 20,000) for ``--soak-minutes`` (default 30) at
             ``--soak-rate`` sends a second: web RSS and CPU, p99, lost and Redis memory
             every ``--soak-sample`` seconds (a plot); then everyone leaves and presence,
             the online sets, the group subscriptions in Redis and the web processes' gauges
             must all come back to zero (no leak).

``--server bare --sections scale`` runs the scale section with the bare ASGI reference
(``bench.bare``) in the site's place, on the same layout: the ceiling of the server the site
runs on, at this many sockets on this machine.

Prints a table and writes JSON (``bench/results/scale.json``) and, unless ``--no-docs``,
its section of docs/benchmarks.md (between the ``scale`` markers, which ``make bench``
keeps) and the soak plot (docs/benchmarks/scale-soak.png).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.request import urlopen

from bench import fixtures, scaleload
from bench.runner import (
    SERVERS,
    ClientPool,
    CpuMeter,
    join_arrays,
    percentiles_ms,
    rss_kib,
    seconds_percentiles,
    server_env,
    wait_idle,
)
from bench.scale_report import thousands
from pubsub_site.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pubsub_bench_scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
FILE_LIMIT = 20_000  # open files a process may have on the benchmark machine (a hard limit)

TARGETS = {
    "connect_s": 120.0,  # all sockets connected and subscribed within
    "kib_per_socket": 30.0,
    "trickle_p99_ms": 200.0,
    "storm_s": 60.0,  # all back on the other processes within
}


@dataclass
class ScalePlan:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    sections: list[str] = field(default_factory=lambda: ["scale", "storm", "soak"])
    sockets: int = 100_000
    per_web: int = 16_000  # sockets a web process may hold (under FILE_LIMIT, with room for its own files)
    per_client: int = 16_000  # sockets a load-generator process holds at most
    room_size: int = 20
    big_rooms: int = 3
    big_room_size: int = 3_000
    connect_concurrency: int = 400  # handshakes at once, over every load generator
    trickle_share: float = 0.01  # of the users, each sending one message a minute
    trickle_seconds: float = 60.0
    idle_seconds: float = 10.0
    storm_sockets: int = 50_000
    storm_window: float = 90.0  # seconds of trickle that the storm happens in (the kill after 5 s)
    storm_kill_after: float = 5.0
    storm_wait: float = 180.0  # seconds after the kill to wait for every client to be back
    soak_sockets: int = 20_000
    soak_minutes: float = 30.0
    soak_rate: float = 20.0  # sends a second
    soak_sample: float = 10.0
    soak_big_rooms: int = 1
    drain_timeout: float = 10.0
    leak_wait: float = 60.0
    profile: bool = False  # py-spy on every web process while they connect, idle and trickle
    # "site", or "bare": the bare ASGI reference (bench.bare) on the same layout, load
    # generators and Redis, the ceiling of the server the site runs on (the scale section only)
    server: str = "site"
    log: object = print


# --- layout --------------------------------------------------------------------------


def web_layout(sockets: int, per_web: int, storm: int) -> tuple[int, int]:
    """(web processes, of which killed in the storm): the survivors hold every socket."""
    survivors = max(1, math.ceil(sockets / per_web))
    if not storm:
        return survivors, 0
    storm = min(storm, sockets)
    for total in range(survivors + 1, 200):
        killed = math.ceil(storm * total / sockets)
        if total - killed >= survivors:
            return total, killed
    raise SystemExit(f"no layout of web processes holds {sockets} sockets with {storm} of them killed")


def rooms_for(sockets: int, room_size: int, big_rooms: int, big_room_size: int) -> list[int]:
    """Room sizes: the big rooms first (if the sockets allow), then rooms of ``room_size``."""
    big = [big_room_size] * big_rooms if big_rooms * big_room_size <= sockets // 2 else []
    rest = sockets - sum(big)
    sizes = big + [room_size] * (rest // room_size)
    if rest % room_size:
        sizes.append(rest % room_size)
    return sizes


def make_population(
    plan: ScalePlan, sockets: int, big_rooms: int, tag: str
) -> tuple[list[tuple[str, list[str]]], dict]:
    """Users (one socket each), their sessions, the rooms and memberships: what it took."""
    started = time.monotonic()
    population = fixtures.Population()
    population.grow(sockets)
    users_s = time.monotonic() - started
    rooms: list[tuple[str, list[str]]] = []
    sizes = rooms_for(sockets, plan.room_size, big_rooms, plan.big_room_size)
    # make_rooms takes consecutive slices of the population: one call per size keeps users apart
    offset = 0
    for size in sorted(set(sizes), reverse=True):
        count = sizes.count(size)
        part = fixtures.Population()
        part.users = population.users[offset : offset + size * count]
        part.sessions = population.sessions[offset : offset + size * count]
        rooms += fixtures.make_rooms(part, rooms=count, members=size, tag=tag)
        offset += size * count
    return rooms, {
        "users": sockets,
        "rooms": len(rooms),
        "room_sizes": {str(s): sizes.count(s) for s in sorted(set(sizes), reverse=True)},
        "users_s": round(users_s, 1),
        "rooms_s": round(time.monotonic() - started - users_s, 1),
    }


def specs_for(rooms, ports: list[int], clients: int) -> list[list[dict]]:
    """Each socket: a home port (round robin, as a load balancer spreads them), then the others."""
    per_client: list[list[dict]] = [[] for _ in range(clients)]
    n = 0
    for slug, sessions in rooms:
        for session in sessions:
            home = n % len(ports)
            per_client[n % clients].append({"ports": ports[home:] + ports[:home], "session": session, "room": slug})
            n += 1
    return per_client


def source_address(i: int) -> str:
    return f"127.0.0.{2 + i}"


# --- servers -----------------------------------------------------------------------


def start_cluster(plan: ScalePlan, webs: int, log) -> Cluster:
    metrics = Path(tempfile.mkdtemp(prefix="pubsub-scale-metrics-"))
    env = server_env(plan)  # the bench's environment: DEBUG off, the send limit nobody reaches
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    # Many web processes on one PostgreSQL (max_connections 100 by default): a small pool each
    # (a handshake reads through the loop's connections, WS_DB_CONNECTIONS), 5 at most a process,
    # unless the environment says otherwise.
    for name, value in {"DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "3", "WS_DB_CONNECTIONS": "2"}.items():
        env[name] = os.environ.get(name, value)
    cluster = Cluster(env=env, web_command=SERVERS["uvicorn" if plan.server == "site" else "bare"].command,
                      log_dir=Path(tempfile.mkdtemp(prefix="pubsub-scale-")))  # fmt: skip
    try:
        for _ in range(webs):
            cluster.start_web()
        cluster.start_worker()
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        cluster.stop()
        raise
    log(f"  {webs} web processes on ports {cluster.ports[0]}…{cluster.ports[-1]}, 1 worker; logs in {cluster.log_dir}")
    return cluster


def web_pids(cluster: Cluster) -> list[int]:
    return [p.pid for p in cluster.webs.values()]


def metrics_gauges(port: int, timeout: float = 30) -> dict[str, float]:
    """The web processes' live gauges, summed over the processes (one scrape of any port)."""
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    wanted = ("pubsub_ws_connections", "pubsub_ws_subscriptions", "pubsub_ws_outbox_backlogged_connections")
    out = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def redis_client(plan: ScalePlan):
    import redis

    return redis.Redis.from_url(plan.redis_url)


def service_calls(plan: ScalePlan) -> dict[str, int]:
    """Counters of the work asked of Redis and PostgreSQL so far: Redis's commands by name
    (its whole server: pub/sub is not per database), its client reads (``total_reads_processed``:
    one a round trip, however many commands a pipeline holds) and PostgreSQL's transactions
    on the benchmark's database."""
    info = redis_client(plan).info("all")
    calls = {f"redis {name.removeprefix('cmdstat_')}": int(stat["calls"])
             for name, stat in info.items() if name.startswith("cmdstat_")}  # fmt: skip
    calls["redis reads"] = int(info.get("total_reads_processed", 0))
    import psycopg

    with psycopg.connect(plan.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        calls["postgres transactions"] = int(row.fetchone()[0])
    return calls


def calls_per(before: dict[str, int], after: dict[str, int], count: int, floor: float = 0.05) -> dict[str, float]:
    """What each of ``count`` handshakes (or sends) cost Redis and PostgreSQL, from two
    ``service_calls``: only what came to at least ``floor`` a one."""
    if not count:
        return {}
    per = {name: (after.get(name, 0) - before.get(name, 0)) / count for name in after}
    return {name: round(v, 2) for name, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= floor}


def redis_memory(plan: ScalePlan) -> int:
    return int(redis_client(plan).info("memory")["used_memory"])


_KEY_CLASS = re.compile(r"\{\d+\}|(?<=:)[0-9a-f-]{8,}(?=:|$)|(?<=:)\d+(?=:|$)|(?<=cached_db)[a-z0-9]+$")


def redis_memory_by_class(plan: ScalePlan) -> dict[str, dict]:
    """Every key's MEMORY USAGE, summed by its class (the key with room ids, user ids and
    client ids taken out): what the soak's Redis memory is made of, largest first."""
    client = redis_client(plan)
    totals: dict[str, dict] = {}
    keys = list(client.scan_iter(count=2000))
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, pipe.execute(), strict=True):
            name = _KEY_CLASS.sub("N", key.decode(errors="replace"))
            entry = totals.setdefault(name, {"keys": 0, "mib": 0.0})
            entry["keys"] += 1
            entry["mib"] += (size or 0) / 2**20
    ranked = sorted(totals.items(), key=lambda kv: -kv[1]["mib"])
    return {name: {"keys": v["keys"], "mib": round(v["mib"], 2)} for name, v in ranked[:15]}


# --- a step of sending, counted -------------------------------------------------------


class Counted:
    """The rooms' acked seq ranges, step after step, and the tally of what members received."""

    def __init__(self, pool: ClientPool, rooms):
        self.pool = pool
        self.top = {slug: 0 for slug, _ in rooms}

    def step(self, sends_per_s: float, seconds: float, drain_timeout: float, meter_groups: dict) -> dict:
        clients = len(self.pool)
        total = max(1, round(sends_per_s * seconds))
        shares = [total // clients + (i < total % clients) for i in range(clients)]
        start_at = time.monotonic() + 0.3
        with CpuMeter({**meter_groups, "clients": self.pool.pids}) as meter:
            runs = self.pool.call(
                "run",
                [{"rate": max(share, 1) / seconds, "total": share, "duration": seconds, "start_at": start_at,
                  "senders": None, "drain_timeout": drain_timeout} for share in shares],
                timeout=seconds + 3 * drain_timeout + 120,
            )  # fmt: skip
        return self.count(runs, meter, seconds, total)

    def count(self, runs: list[dict], meter: CpuMeter | None, seconds: float, total: int, settle: float = 0) -> dict:
        ranges = {}
        for slug in self.top:
            acked = [seq for r in runs for seq in r["acked"].get(slug, [])]
            hi = max(acked, default=self.top[slug])
            ranges[slug] = (self.top[slug], hi)
            self.top[slug] = hi
        behind = 0
        if settle:
            tops = {slug: hi for slug, (_, hi) in ranges.items()}
            behind = sum(r["behind"] for r in self.pool.each("settle", top=tops, wait=settle))
        tallies = self.pool.each("tally", ranges=ranges)
        latency = join_arrays([t["latency_ns"] for t in tallies])
        sent = sum(r["sent"] for r in runs)
        acked = sum(len(v) for r in runs for v in r["acked"].values())
        result = {
            "seconds": seconds,
            "asked": total,
            "sent": sent,
            "acked": acked,
            "unacked": sum(r["unacked"] for r in runs),
            "send_errors": sum(r["send_errors"] for r in runs),
            "error_codes": {k: v for r in runs for k, v in r["error_codes"].items()},
            "delivered": sum(t["delivered"] for t in tallies),
            "lost": sum(t["lost"] for t in tallies),
            "duplicated": sum(t["duplicated"] for t in tallies),
            "out_of_order": sum(t["out_of_order"] for t in tallies),
            "closed_members": sum(t["closed_members"] for t in tallies),
            "behind_after_settle": behind,
            **percentiles_ms(latency),
        }
        if meter is not None:
            result["cores"] = meter.cores
            result["cpu_s"] = meter.seconds
        return result


def _us(seconds: float, count: int) -> float | None:
    return round(seconds / count * 1e6, 1) if count else None


# --- the runs ------------------------------------------------------------------------


def spying(plan: ScalePlan, pids: list[int], name: str):
    """py-spy on ``pids`` for the block when ``--profile`` asked for it; nothing otherwise."""
    from contextlib import nullcontext

    from bench.profile import Spy

    if not plan.profile:
        return nullcontext(None)
    return Spy(pids, name)


def run_scale(plan: ScalePlan, want_storm: bool) -> dict:
    """``plan.sockets`` signed-in sockets, the trickle, and (``want_storm``) the storm on them."""
    log = plan.log
    storm = plan.storm_sockets if want_storm else 0
    webs, killed = web_layout(plan.sockets, plan.per_web, storm)
    clients = max(1, math.ceil(plan.sockets / plan.per_client))
    log(f"== scale: {plan.sockets:,} sockets on {webs} web processes ({killed} to be killed in the storm),"
        f" {clients} load generators")  # fmt: skip
    rooms, made = make_population(plan, plan.sockets, plan.big_rooms, "scale")
    log(
        f"  {made['users']:,} users and sessions in {made['users_s']} s, {made['rooms']:,} rooms in {made['rooms_s']} s"
    )
    cluster = start_cluster(plan, webs, log)
    out: dict = {"layout": {"web_processes": webs, "killed_in_storm": killed, "load_generators": clients,
                            "file_limit": FILE_LIMIT}, "fixtures": made}  # fmt: skip
    try:
        with ClientPool(clients, target=scaleload.client_main) as pool:
            groups = {"web": web_pids(cluster), "worker": [w.pid for w in cluster.workers]}
            wait_idle(groups["web"], timeout=20)
            rss_before = {pid: rss_kib(pid) for pid in groups["web"]}
            per_client = specs_for(rooms, cluster.ports, clients)
            each = max(1, plan.connect_concurrency // clients)
            load = os.getloadavg()
            calls_before = service_calls(plan)
            with spying(plan, groups["web"], "connect") as spy, CpuMeter({**groups, "clients": pool.pids}) as meter:
                replies = pool.call(
                    "connect",
                    [{"specs": specs, "concurrency": each, "timeout": 60, "source": source_address(i)}
                     for i, specs in enumerate(per_client)],
                    timeout=3600,
                )  # fmt: skip
            connected = sum(r["connected"] for r in replies)
            calls = calls_per(calls_before, service_calls(plan), connected)
            connect = {
                "asked": sum(r["asked"] for r in replies),
                "connected": connected,
                "failed": sum(r["failed"] for r in replies),
                "failures": [f for r in replies for f in r["failures"]][:5],
                "retries_1013": sum(r["retries_1013"] for r in replies),
                "retries_other": sum(r["retries_other"] for r in replies),
                "seconds": round(max(r["seconds"] for r in replies), 1),
                "each": seconds_percentiles([x for r in replies for x in r["seconds_each"]]),
                "cores": meter.cores,
                "service_cores": meter.service_cores,
                "calls_per_handshake": calls,
                "cpu_s": meter.seconds,
                "web_ms_per_handshake": round(meter.seconds["web"] / connected * 1000, 2) if connected else None,
                "clients_ms_per_handshake": round(meter.seconds["clients"] / connected * 1000, 2)
                if connected
                else None,
                "load_average_before": [round(x, 1) for x in load],
            }
            if plan.profile:
                out["profile"] = {"connect": spy.summary}
            connect["per_s"] = round(connected / connect["seconds"], 1) if connect["seconds"] else None
            log(f"  connected {connected:,} of {connect['asked']:,} in {connect['seconds']} s ({connect['per_s']}/s),"
                f" {connect['failed']} failed, retries {connect['retries_1013']} (1013) + {connect['retries_other']};"
                f" web {connect['web_ms_per_handshake']} ms CPU a handshake, load generators"
                f" {connect['clients_ms_per_handshake']} ms; cores {meter.cores}, of the rest"
                f" {meter.service_cores}")  # fmt: skip
            log(f"  a handshake asked of Redis and PostgreSQL: {calls}")
            wait_idle(groups["web"], timeout=60)
            time.sleep(2)
            rss_after = {pid: rss_kib(pid) for pid in groups["web"]}
            grown = sum(rss_after.values()) - sum(rss_before.values())
            memory = {
                "rss_before_kib": sum(rss_before.values()),
                "rss_after_kib": sum(rss_after.values()),
                "per_process_after_mib": sorted(round(v / 1024, 1) for v in rss_after.values()),
                "kib_per_socket": round(grown / connected, 2) if connected else None,
                "gauges": metrics_gauges(cluster.ports[0]) if plan.server == "site" else None,  # bare: none
                "redis_used_memory_mib": round(redis_memory(plan) / 2**20, 1),
            }
            log(
                f"  web RSS {memory['rss_before_kib'] / 1024:.0f} → {memory['rss_after_kib'] / 1024:.0f} MiB:"
                f" {memory['kib_per_socket']} KiB a socket; gauges {memory['gauges']}"
            )
            with spying(plan, groups["web"], "idle") as spy, CpuMeter({**groups, "clients": pool.pids}) as idle:
                time.sleep(plan.idle_seconds)
            if plan.profile:
                out["profile"]["idle"] = spy.summary
            per_socket = _us(idle.seconds["web"] / plan.idle_seconds, connected)
            idle_figures = {"seconds": plan.idle_seconds, "cores": idle.cores, "service_cores": idle.service_cores,
                            "web_us_per_socket_second": per_socket}  # fmt: skip
            log(f"  idle {plan.idle_seconds:g} s: cores {idle.cores}, of the rest {idle.service_cores}")
            counted = Counted(pool, rooms)
            rate = plan.sockets * plan.trickle_share / 60
            with spying(plan, groups["web"], "trickle") as spy:
                trickle = counted.step(rate, plan.trickle_seconds, plan.drain_timeout, groups)
            if plan.profile:
                out["profile"]["trickle"] = spy.summary
            trickle["sends_per_s"] = round(rate, 2)
            log(f"  trickle {rate:.1f} sends/s for {plan.trickle_seconds:g} s: {_step_line(trickle)}")
            out.update({"connect": connect, "memory": memory, "idle": idle_figures, "trickle": trickle})
            if killed:
                out["storm"] = run_storm(plan, cluster, pool, counted, killed, rate, groups)
            pool.each("close")
    finally:
        cluster.stop(graceful=False)
    return out


def run_storm(plan, cluster: Cluster, pool: ClientPool, counted: Counted, killed: int, rate: float, groups) -> dict:
    """SIGKILL ``killed`` web processes (every other port) in a trickle; all back, nothing lost."""
    log = plan.log
    ports = cluster.ports
    victims = (ports[::2] + ports[1::2])[:killed]
    gauges_before = {}
    held = metrics_gauges(ports[0])["pubsub_ws_connections"]
    # what each victim holds: its share of the sockets (round robin); read the RSS too
    for port in victims:
        gauges_before[port] = rss_kib(cluster.webs[port].pid)
    held_by_victims = round(held * killed / len(ports))
    pool.each("forget")
    pool.each("arm", on=True, retry_for=plan.storm_wait)
    total = max(1, round(rate * plan.storm_window))
    shares = [total // len(pool) + (i < total % len(pool)) for i in range(len(pool))]
    start_at = time.monotonic() + 0.3
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(0.3 + plan.storm_kill_after)
        killed_at.append(time.monotonic())
        for port in victims:
            os.kill(cluster.webs[port].pid, signal.SIGKILL)
        log(
            f"  storm: SIGKILL {len(victims)} web processes (ports {', '.join(map(str, victims))},"
            f" ~{held_by_victims:,} sockets)"
        )

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    survivors = {"web": [cluster.webs[p].pid for p in ports if p not in victims], "worker": groups["worker"]}
    with CpuMeter({**survivors, "clients": pool.pids}) as meter:
        runs = pool.call(
            "run",
            [{"rate": max(share, 1) / plan.storm_window, "total": share, "duration": plan.storm_window,
              "start_at": start_at, "senders": None, "drain_timeout": plan.drain_timeout} for share in shares],
            timeout=plan.storm_window + 3 * plan.drain_timeout + 300,
        )  # fmt: skip
        killer.join()
        back = pool.each("back", wait=max(5.0, killed_at[0] + plan.storm_wait - time.monotonic()))
    for port in victims:
        cluster.kill_web(port)  # reaped, its gauges gone
    last_in = max((r["last_in_at"] or 0 for r in back), default=0)
    still_out = sum(r["still_out"] for r in back)
    dropped = sum(r["asked"] for r in back)
    result = counted.count(runs, meter, plan.storm_window, total, settle=60)
    status = pool.each("status")
    try:  # survivors still busy with the storm may not answer within the default
        gauges = metrics_gauges(cluster.ports[0], timeout=180)
    except OSError as error:  # the storm's figures stand without it
        log(f"  storm: the survivors' gauges could not be read: {error!r}")
        gauges = {"pubsub_ws_connections": None}
    held_now = gauges["pubsub_ws_connections"]
    storm = {
        "killed_processes": len(victims),
        "sockets_dropped": dropped,
        "back": sum(r["connected"] for r in back),
        "still_out": still_out,
        "failed": sum(r["failed"] for r in back),
        "failures": [f for r in back for f in r["failures"]][:5],
        "retries_1013": sum(r["retries_1013"] for r in back),
        "retries_other": sum(r["retries_other"] for r in back),
        # None: not all back within storm_wait (still_out says how many were not)
        "seconds_to_all_back": round(last_in - killed_at[0], 1) if last_in and not still_out else None,
        "waited_s": plan.storm_wait,
        "each": seconds_percentiles([x for r in back for x in r["each"]]),
        "open_after": sum(s["open"] for s in status),
        "members": sum(s["members"] for s in status),
        "survivor_connections_gauge": held_now,
        # None when the gauges could not be read (not 0: nobody counted them)
        "per_survivor": None if held_now is None else round(held_now / len(cluster.ports)),
        "window": result,
        "victims_rss_mib": [round(v / 1024, 1) for v in gauges_before.values()],
    }
    took = storm["seconds_to_all_back"]
    took = f"{took} s" if took else f"more than {plan.storm_wait:g} s"
    log(f"  storm: {storm['back']:,} of {dropped:,} back in {took}"
        f" ({storm['still_out']} still out, {storm['failed']} failed, retries {storm['retries_1013']} (1013) +"
        f" {storm['retries_other']}), ~{thousands(storm['per_survivor'])} sockets per survivor;"
        f" the {plan.storm_window:g} s window: {_step_line(result)}")  # fmt: skip
    return storm


def run_soak(plan: ScalePlan) -> dict:
    log = plan.log
    webs, _ = web_layout(plan.soak_sockets, plan.per_web, 0)
    clients = max(1, math.ceil(plan.soak_sockets / plan.per_client))
    log(f"== soak: {plan.soak_sockets:,} sockets on {webs} web processes for {plan.soak_minutes:g} min at"
        f" {plan.soak_rate:g} sends/s")  # fmt: skip
    rooms, made = make_population(plan, plan.soak_sockets, plan.soak_big_rooms, "soak")
    cluster = start_cluster(plan, webs, log)
    samples = []
    out: dict = {"web_processes": webs, "load_generators": clients, "fixtures": made, "rate": plan.soak_rate}
    try:
        with ClientPool(clients, target=scaleload.client_main) as pool:
            groups = {"web": web_pids(cluster), "worker": [w.pid for w in cluster.workers]}
            replies = pool.call(
                "connect",
                [{"specs": specs, "concurrency": max(1, plan.connect_concurrency // clients), "timeout": 60,
                  "source": source_address(i)} for i, specs in enumerate(specs_for(rooms, cluster.ports, clients))],
                timeout=3600,
            )  # fmt: skip
            connected = sum(r["connected"] for r in replies)
            out["connected"] = connected
            out["failed"] = sum(r["failed"] for r in replies)
            log(f"  {connected:,} connected in {max(r['seconds'] for r in replies):.1f} s")
            out["redis_by_class_start"] = redis_memory_by_class(plan)
            counted = Counted(pool, rooms)
            started = time.monotonic()
            end = started + plan.soak_minutes * 60
            while time.monotonic() < end:
                window = min(plan.soak_sample, max(1.0, end - time.monotonic()))
                step = counted.step(plan.soak_rate, window, min(plan.drain_timeout, 5.0), groups)
                sample = {
                    "t_s": round(time.monotonic() - started, 1),
                    "web_rss_mib": round(sum(rss_kib(p) for p in groups["web"]) / 1024, 1),
                    "web_cores": step["cores"]["web"],
                    "clients_cores": step["cores"]["clients"],
                    "machine_cores": step["cores"]["machine"],
                    "p99_ms": step["p99_ms"],
                    "p50_ms": step["p50_ms"],
                    "delivered": step["delivered"],
                    "lost": step["lost"],
                    "duplicated": step["duplicated"],
                    "closed": step["closed_members"],
                    "redis_mib": round(redis_memory(plan) / 2**20, 2),
                    "load1": round(os.getloadavg()[0], 1),
                }
                samples.append(sample)
                log(f"  soak t={sample['t_s']:>6} s: RSS {sample['web_rss_mib']} MiB, web {sample['web_cores']}"
                    f" cores, p99 {sample['p99_ms']} ms, lost {sample['lost']}, Redis {sample['redis_mib']} MiB,"
                    f" load {sample['load1']}")  # fmt: skip
            gauges_before_leaving = metrics_gauges(cluster.ports[0])
            out["redis_by_class"] = redis_memory_by_class(plan)
            log(f"  Redis by key class: {out['redis_by_class']}")
            pool.each("close")
        out["samples"] = samples
        out["gauges_before_leaving"] = gauges_before_leaving
        out["leak"] = leak_check(plan, cluster, rooms)
        log(f"  after everyone left: {out['leak']}")
    finally:
        cluster.stop(graceful=False)
    out["summary"] = soak_summary(samples)
    return out


def soak_summary(samples: list[dict]) -> dict:
    if not samples:
        return {}
    half = max(1, len(samples) // 2)

    def drift(key: str) -> float | None:
        first = [s[key] for s in samples[:half] if s[key] is not None]
        last = [s[key] for s in samples[half:] if s[key] is not None] or first
        if not first:
            return None
        return round(sum(last) / len(last) - sum(first) / len(first), 2)

    p99s = [s["p99_ms"] for s in samples if s["p99_ms"] is not None]
    return {
        "samples": len(samples),
        "lost": sum(s["lost"] for s in samples),
        "duplicated": sum(s["duplicated"] for s in samples),
        "p99_ms_max": max(p99s, default=None),
        "p99_ms_median": sorted(p99s)[len(p99s) // 2] if p99s else None,
        "rss_mib_first": samples[0]["web_rss_mib"],
        "rss_mib_last": samples[-1]["web_rss_mib"],
        "rss_mib_drift_second_half": drift("web_rss_mib"),
        "redis_mib_first": samples[0]["redis_mib"],
        "redis_mib_last": samples[-1]["redis_mib"],
        "web_cores_mean": round(sum(s["web_cores"] for s in samples) / len(samples), 2),
        "load1_mean": round(sum(s["load1"] for s in samples) / len(samples), 1),
    }


def leak_check(plan: ScalePlan, cluster: Cluster, rooms) -> dict:
    """After everyone left: presence (live or expired), online sets, group subscriptions and gauges all at zero."""
    from django.conf import settings

    from messaging.store.keys import RoomKeys
    from messaging.store.online import online_key
    from protocol.events import activity_group, room_group
    from rooms.models import Membership

    client = redis_client(plan)
    ids = fixtures.room_ids([slug for slug, _ in rooms])
    user_ids = list(Membership.objects.filter(room_id__in=ids.values()).values_list("user_id", flat=True))
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "asgi")
    channels = [f"{prefix}__group__{g(pk)}" for pk in ids.values() for g in (room_group, activity_group)]
    deadline = time.monotonic() + plan.leak_wait
    started = time.monotonic()
    while True:
        pipe = client.pipeline(transaction=False)
        now = time.time()  # presence scores are expiry times (Unix seconds)
        for pk in ids.values():
            pipe.zcount(RoomKeys(pk).presence, now, "+inf")
            pipe.zcount(RoomKeys(pk).presence, "-inf", now)
            pipe.exists(RoomKeys(pk).presence_users)
            pipe.exists(RoomKeys(pk).presence_news)
        presence = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for uid in user_ids:
            pipe.exists(online_key(uid))
        online = sum(pipe.execute())
        subscribed = 0
        for start in range(0, len(channels), 1000):
            subscribed += sum(1 for _, n in client.pubsub_numsub(*channels[start : start + 1000]) if n)
        gauges = metrics_gauges(cluster.ports[0])
        state = {
            # still there and not expired: someone the site believes present
            "presence_live": sum(presence[0::4]),
            # expired but never removed: the leave did not run; only a later visit's sweep drops them
            "presence_expired": sum(presence[1::4]),
            "presence_user_keys": sum(presence[2::4]),
            # comings and goings nobody told the room
            "presence_news": sum(presence[3::4]),
            "online_users": online,
            "subscribed_groups": subscribed,
            "gauge_connections": gauges["pubsub_ws_connections"],
            "gauge_subscriptions": gauges["pubsub_ws_subscriptions"],
        }
        clean = not any(state.values())
        if clean or time.monotonic() > deadline:
            return {**state, "clean": clean, "seconds": round(time.monotonic() - started, 1)}
        time.sleep(2)


def _step_line(step: dict) -> str:
    return (
        f"sent {step['sent']:,}, acked {step['acked']:,}, delivered {step['delivered']:,}, p50 {step['p50_ms']}"
        f" p99 {step['p99_ms']} max {step['max_ms']} ms, lost {step['lost']}, dup {step['duplicated']},"
        f" send errors {step['send_errors']} {step['error_codes'] or ''}, unacked {step['unacked']},"
        f" cut off {step['closed_members']}; cores {step.get('cores')}"
    )


# --- the whole run -----------------------------------------------------------------


def run(plan: ScalePlan) -> dict:
    from bench.loadgen import raise_open_files_limit

    limit = raise_open_files_limit()
    plan.log(f"database {fixtures.database_name(plan.database_url)} (recreated), redis {plan.redis_url} (flushed);"
             f" open files per process: {limit:,}")  # fmt: skip
    fixtures.recreate_database(plan.database_url)
    fixtures.setup_django(plan.database_url, plan.redis_url)
    redis_client(plan).flushdb()
    results: dict = {"open_files_limit": limit}
    started = time.monotonic()
    if "scale" in plan.sections or "storm" in plan.sections:
        try:
            results["scale"] = run_scale(plan, want_storm="storm" in plan.sections)
        except Exception as error:
            plan.log(f"  scale failed: {type(error).__name__}: {error}")
            results["scale"] = {"error": f"{type(error).__name__}: {error}"}
    if "soak" in plan.sections:
        try:
            results["soak"] = run_soak(plan)
        except Exception as error:
            plan.log(f"  soak failed: {type(error).__name__}: {error}")
            results["soak"] = {"error": f"{type(error).__name__}: {error}"}
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = ScalePlan()
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--sections", default="scale,storm,soak", help="comma-separated: scale, storm, soak")
    parser.add_argument("--sockets", type=int, default=d.sockets, help=f"sockets of scale and storm ({d.sockets:,})")
    parser.add_argument("--per-web", type=int, default=d.per_web, help=f"sockets a web process holds ({d.per_web:,})")
    parser.add_argument("--per-client", type=int, default=d.per_client,
                        help=f"sockets a load-generator process holds ({d.per_client:,})")  # fmt: skip
    parser.add_argument("--room-size", type=int, default=d.room_size)
    parser.add_argument("--big-rooms", type=int, default=d.big_rooms)
    parser.add_argument("--big-room-size", type=int, default=d.big_room_size)
    parser.add_argument("--connect-concurrency", type=int, default=d.connect_concurrency,
                        help="handshakes at once over every load generator")  # fmt: skip
    parser.add_argument("--trickle-share", type=float, default=d.trickle_share,
                        help="share of the users sending one message a minute (0.01)")  # fmt: skip
    parser.add_argument("--trickle-seconds", type=float, default=d.trickle_seconds)
    parser.add_argument("--idle-seconds", type=float, default=d.idle_seconds)
    parser.add_argument("--storm-sockets", type=int, default=d.storm_sockets,
                        help="sockets held by the web processes killed (50,000)")  # fmt: skip
    parser.add_argument("--storm-window", type=float, default=d.storm_window,
                        help="seconds of trickle the storm happens in (the kill after 5 s)")  # fmt: skip
    parser.add_argument("--storm-wait", type=float, default=d.storm_wait,
                        help="seconds after the kill to wait for every client to be back (180)")  # fmt: skip
    parser.add_argument("--soak-sockets", type=int, default=d.soak_sockets)
    parser.add_argument("--soak-minutes", type=float, default=d.soak_minutes)
    parser.add_argument("--soak-rate", type=float, default=d.soak_rate, help="sends a second during the soak")
    parser.add_argument("--soak-sample", type=float, default=d.soak_sample, help="seconds between samples")
    parser.add_argument("--leak-wait", type=float, default=d.leak_wait,
                        help="seconds to wait for the state to come back to zero after everyone left")  # fmt: skip
    parser.add_argument("--server", choices=("site", "bare"), default=d.server,
                        help="bare: the bare ASGI reference (bench.bare), the scale section only")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="py-spy on the web processes as they connect, idle, trickle (in the JSON)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-docs", action="store_true", help="write neither docs/benchmarks.md nor the plot")
    parser.add_argument("--render", metavar="JSON", default=None, help="run nothing: write the docs from a run's JSON")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_SCALE_REDIS_URL", DEFAULT_REDIS_URL))
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> ScalePlan:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for name in sections:
        if name not in ("scale", "storm", "soak"):
            raise SystemExit(f"--sections {name}: unknown (known: scale, storm, soak)")
    if args.server == "bare" and sections != ["scale"]:
        raise SystemExit("--server bare runs the scale section only (the bare app has no gauges, presence or drain)")
    if args.per_web >= FILE_LIMIT or args.per_client >= FILE_LIMIT:
        raise SystemExit(f"--per-web and --per-client must stay under the {FILE_LIMIT:,} open files of a process")
    names = ("sockets", "per_web", "per_client", "room_size", "big_rooms", "big_room_size", "connect_concurrency",
             "trickle_share", "trickle_seconds", "idle_seconds", "storm_sockets", "storm_window", "storm_wait",
             "soak_sockets", "soak_minutes", "soak_rate", "soak_sample", "leak_wait", "profile", "server")  # fmt: skip
    plan = ScalePlan(database_url=args.database_url, redis_url=args.redis_url, sections=sections,
                     **{n: getattr(args, n) for n in names})  # fmt: skip
    plan.storm_window = max(plan.storm_window, plan.storm_kill_after + 5)
    if plan.storm_sockets > plan.sockets // 2:  # SCALE_SOCKETS lowered alone: the storm takes half
        half = plan.sockets // 2
        print(f"--storm-sockets {plan.storm_sockets:,} > half of {plan.sockets:,} sockets: {half:,} instead")
        plan.storm_sockets = half

    def log(line: str) -> None:
        print(line, flush=True)

    plan.log = log
    return plan


def main(argv: list[str] | None = None) -> int:
    from bench import report, scale_report

    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        plan = make_plan(args)
        command = "python -m bench.scale " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        results = run(plan)
        results["meta"] = {
            "command": command,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": report.git_commit(),
            "machine": report.machine(),
            "services": report.service_versions(plan),
            "plan": {k: v for k, v in asdict(plan).items() if k != "log"},
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
            "targets": TARGETS,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nJSON: {out}")
    print()
    print(scale_report.text_table(results))
    if not args.no_docs:
        docs = Path(args.docs)
        plot = docs.parent / "benchmarks" / "scale-soak.png"
        has_plot = scale_report.plot_soak(results, plot)
        scale_report.write_docs(docs, scale_report.markdown(results, plot if has_plot else None, docs))
        print(f"Markdown: {docs}" + (f", plot: {plot}" if has_plot else ""))
    failed = [k for k in ("scale", "soak") if isinstance(results.get(k), dict) and "error" in results[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
