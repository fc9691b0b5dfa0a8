"""The runs of ``python -m bench.scale``: ``scale`` (every socket connected and subscribed, web memory
and CPU per socket, then the trickle), ``storm`` (web processes SIGKILLed in a trickle: every
client back on the survivors, nothing lost) and ``soak`` (sockets held for minutes at a steady
rate, sampled, then everyone leaves and ``leak_check`` wants every trace of them gone).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import Counter

from bench import fixtures, scaleload
from bench.clients import ClientPool
from bench.meters import CpuMeter, rss_kib, seconds_percentiles, wait_idle
from bench.profile import spying
from bench.scale_cluster import (
    Counted,
    calls_per,
    make_population,
    metrics_gauges,
    redis_client,
    redis_memory,
    redis_memory_by_class,
    service_calls,
    start_cluster,
    web_pids,
)
from bench.scale_plan import FILE_LIMIT, ScalePlan, source_address, specs_for, web_layout
from bench.scale_report import thousands
from pubsub_site.cluster import Cluster


def _us(seconds: float, count: int) -> float | None:
    return round(seconds / count * 1e6, 1) if count else None


# --- the runs ------------------------------------------------------------------------


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
            with (
                spying(plan.profile, groups["web"], "connect") as spy,
                CpuMeter({**groups, "clients": pool.pids}) as meter,
            ):
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
            with spying(plan.profile, groups["web"], "idle") as spy, CpuMeter({**groups, "clients": pool.pids}) as idle:
                time.sleep(plan.idle_seconds)
            if plan.profile:
                out["profile"]["idle"] = spy.summary
            per_socket = _us(idle.seconds["web"] / plan.idle_seconds, connected)
            idle_figures = {"seconds": plan.idle_seconds, "cores": idle.cores, "service_cores": idle.service_cores,
                            "web_us_per_socket_second": per_socket}  # fmt: skip
            log(f"  idle {plan.idle_seconds:g} s: cores {idle.cores}, of the rest {idle.service_cores}")
            counted = Counted(pool, rooms)
            rate = plan.sockets * plan.trickle_share / 60
            with spying(plan.profile, groups["web"], "trickle") as spy:
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
    with spying(plan.profile, survivors["web"], "storm") as spy, CpuMeter({**survivors, "clients": pool.pids}) as meter:
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
        # why tries failed (those tried again), and how the connections were cut (a close code, or none)
        "retry_reasons": dict(sum((Counter(r["retry_reasons"]) for r in back), Counter())),
        "drop_reasons": dict(sum((Counter(r["drop_reasons"]) for r in back), Counter())),
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
    if plan.profile:
        storm["profile"] = spy.summary
    took = storm["seconds_to_all_back"]
    took = f"{took} s" if took else f"more than {plan.storm_wait:g} s"
    log(f"  storm: {storm['back']:,} of {dropped:,} back in {took}"
        f" ({storm['still_out']} still out, {storm['failed']} failed, retries {storm['retries_1013']} (1013) +"
        f" {storm['retries_other']}), ~{thousands(storm['per_survivor'])} sockets per survivor;"
        f" the {plan.storm_window:g} s window: {_step_line(result)}")  # fmt: skip
    log(f"  storm: cut by {storm['drop_reasons']}; tries that failed: {storm['retry_reasons']}")
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
