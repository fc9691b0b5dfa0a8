"""``memory``: the RSS growth of a fresh web process over 5,000 idle subscribed connections, after
200 warm-up connections; one user per connection, each a member of its room of 20, users of
their own (not the earlier sections'): the figure does not depend on what ran before.
"""

from __future__ import annotations

import time

from bench import fixtures
from bench.meters import rss_kib, wait_idle
from bench.servers import web_pids
from bench.shape import Shape


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
