"""What a ``python -m bench.scale`` run sets up and reads off: the users, sessions and rooms of its
layout, the web processes (few database connections each) and the worker, the web processes'
live gauges, the calls asked of Redis and PostgreSQL, Redis's memory (by key class), and a
step of sending counted over every room (``Counted``: acked ranges, lost, duplicated, p99).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

from bench import fixtures
from bench.clients import ClientPool
from bench.meters import CpuMeter, join_arrays, percentiles_ms
from bench.plan import SERVERS
from bench.scale_plan import ScalePlan, rooms_for
from bench.servers import server_env
from pubsub_site.cluster import Cluster


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
