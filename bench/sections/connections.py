"""Connections arriving at once: ``handshake`` (1,000 clients connect and subscribe all at once, first
cold, each first subscribe joining its public room, then warm, members already: per second per
web process, and cold over warm) and ``storm`` (2,000 subscribed clients lose their connections
at once and all come back as the browser does; then every one of them receives).
"""

from __future__ import annotations

import time

from bench.meters import CpuMeter, wait_idle
from bench.profile import spying
from bench.servers import web_pids
from bench.shape import new_shape, step_line
from pubsub_site.cluster import Cluster

# After a handshake run, its web CPU is counted this long and then until the web processes are
# idle: longer than PRESENCE_COALESCE_SECONDS (1 s), after which the rooms hear of the last who
# came online. A second of a thousand idle sockets is a few milliseconds of CPU.
SETTLE_SECONDS = 1.5


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
    room (its first subscribe joins it: a write), then warm, the same clients again. With
    ``profile_handshake`` (``--profile-handshake``), py-spy samples the web processes during each
    phase: its summary goes in the phase's figures and the log."""
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
            with (
                CpuMeter({"web": web_pids(cluster)}) as meter,
                spying(plan.profile_handshake, web_pids(cluster), f"handshake-{phase}", rate=250) as spy,
            ):
                connect = shape.connect(concurrency=concurrency, budget=plan.connect_budget)
                # What the connects leave to do afterwards is theirs: the rooms hear of who
                # came online together, up to PRESENCE_COALESCE_SECONDS later.
                time.sleep(SETTLE_SECONDS)
                wait_idle(web_pids(cluster), timeout=30)
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
            if spy is not None:
                connect["profile"] = spy.summary
                _log_profile(plan, spy.summary)
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


def _log_profile(plan, summary: dict) -> None:
    if "samples" not in summary:
        plan.log(f"      not profiled: {summary.get('skipped') or summary.get('errors')}")
        return
    areas = ", ".join(f"{a['area']} {a['percent']}%" for a in summary["by_area"][:8])
    plan.log(f"      profile ({summary['samples']} samples): {areas}")
    for row in summary["self"][:8]:
        plan.log(f"        {row['percent']:5}%  {row['function']}")


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
