"""The load ladders, each stepping the delivered rate up (``bench.shape.ladder``: the capacity is the
highest step that passed before the first that failed): ``latency`` (10 rooms x 20 members),
``fanout`` (1 room x 1,000 members, 50 distinct users) and ``spectators`` (the fan-out room with
5,000 more connections that only receive: judged on nothing lost and no one cut off, not on
latency).
"""

from __future__ import annotations

from bench.meters import wait_idle
from bench.servers import web_pids
from bench.shape import ladder, new_shape


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
