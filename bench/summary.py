"""What the run's JSON holds beside the sections' own figures (``run_and_describe``): what it ran on
(the machine, the packages, PostgreSQL's and Redis's versions, the commit, the plan), the summary
of each configuration (the fixed rates' latency, each ladder's capacity and web CPU per copy, the
handshakes, the storm, memory, persistence lag, the API, every step's losses, and each figure's
share of the bare reference app's), and which targets each configuration met.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from bench import fixtures, runner
from bench.plan import CHANNEL_LAYER, P99_LIMIT_MS, ROOT, SERVERS, Plan

PACKAGES = [
    "Django", "channels", "channels-redis", "daphne", "Twisted", "autobahn", "uvicorn", "websockets", "httptools",
    "granian", "uvloop", "redis", "psycopg", "rq", "django-rq", "orjson", "picows",
]  # fmt: skip

TARGETS = {
    "capacity_10x20": "10 rooms x 20 members: ≥ 30,000 delivered msg/s at p99 < 100 ms, persistence on, 0 lost",
    "capacity_1x1000": "1 room x 1,000 members: ≥ 30,000 delivered msg/s at p99 < 100 ms, 0 lost",
    "spectators": "the same room with 5,000 spectators held: every one connected, no one cut off, 0 lost",
    "handshake": "1,000 clients connect and subscribe all at once: ≥ 1,000/s per web process, cold (each first"
    " subscribe joins its public room) and warm (members already); cold ≤ 2x warm",
    "storm": "2,000 clients dropped at once are all back in < 10 s, and then lose nothing",
    "cpu_per_copy": "web CPU per delivered copy ≤ 30 µs (at each ladder's highest passing step)",
    "memory": "< 30 KiB server memory per idle connection",
    "persistence": "persistence lag (ack → row in PostgreSQL) p99 < 1 s at 1,500 msg/s",
}
CPU_PER_COPY_US = 30.0
MEMORY_KIB = 30.0
LADDER_TARGET = 30000


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
    }


def service_versions(plan: Plan) -> dict:
    out = {}
    try:
        import psycopg

        with psycopg.connect(plan.database_url) as conn:
            out["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as error:
        out["postgresql"] = f"? ({error})"
    try:
        import redis

        out["redis"] = redis.Redis.from_url(plan.redis_url).info("server")["redis_version"]
    except Exception as error:
        out["redis"] = f"? ({error})"
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def run_and_describe(plan: Plan, *, command: str, quick: bool) -> dict:
    results = runner.run(plan)
    results["meta"] = {
        "command": command,
        "quick": quick,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "machine": machine(),
        "services": service_versions(plan),
        "plan": {
            "duration_s": plan.duration,
            "drain_timeout_s": plan.drain_timeout,
            "client_processes": plan.clients,
            "latency_shape": plan.latency_shape,
            "latency_ladder": plan.latency_ladder,
            "fixed_rates": plan.fixed_rates,
            "fanout_shape": plan.fanout_shape,
            "fanout_users": plan.fanout_users,
            "fanout_ladder": plan.fanout_ladder,
            "spectators": plan.spectators,
            "spectator_users": plan.spectator_users,
            "spectators_ladder": plan.spectators_ladder,
            "handshake_clients": plan.handshake_clients,
            "handshake_concurrency": plan.handshake_concurrency,
            "storm_clients": plan.storm_clients,
            "storm_check_rate": plan.storm_check_rate,
            "persistence_rate": plan.persistence_rate,
            "persistence_shape": plan.persistence_shape,
            "memory_connections": plan.memory_connections,
            "memory_room_size": plan.memory_room_size,
            "memory_warmup": plan.memory_warmup,
            "connect_budget_s": plan.connect_budget,
            "profile_rate": plan.profile_rate,
            "p99_limit_ms": P99_LIMIT_MS,
            "channel_layer": CHANNEL_LAYER,
            "database": fixtures.database_name(plan.database_url),
            "redis": plan.redis_url,
            "web_commands": {k: v.command for k, v in SERVERS.items()},
        },
    }
    results["summary"] = summarise(results)
    results["targets"] = targets(results)
    return results


# --- summary --------------------------------------------------------------------------


def steps_run(section: dict | None) -> list[dict]:
    """The steps of a ladder that ran (not those skipped as saturated)."""
    return [s for s in (section or {}).get("steps", []) if "skipped" not in s]


HANDSHAKE_FIGURES = ("connections", "asked", "seconds", "per_s_per_web_process", "retries_1013", "retries_other",
                     "failed", "cold_vs_warm", "pass")  # fmt: skip
STORM_FIGURES = ("connections", "asked", "seconds", "retries_1013", "retries_other", "failed", "pass")


def _top_passing(section: dict | None) -> dict | None:
    """The highest step of a ladder that passed (before the first failure)."""
    top = None
    for step in (section or {}).get("steps", []):
        if "skipped" in step or not step["pass"]:
            break
        top = step
    return top


def summarise(results: dict) -> dict:
    summary = {}
    fixed_rates = results["meta"]["plan"]["fixed_rates"]
    for key, config in results["configs"].items():
        row: dict = {"label": config["label"], "reference": config.get("reference", False)}
        latency = config.get("latency")
        if latency and "steps" in latency:
            by_rate = {s["target_delivered_per_s"]: s for s in latency["steps"]}
            row["fixed"] = {
                str(rate): (
                    {k: by_rate[rate].get(k) for k in ("p50_ms", "p99_ms", "max_ms", "pass", "delivered_per_s")}
                    if rate in by_rate and "skipped" not in by_rate[rate]
                    else ({"skipped": by_rate[rate]["skipped"]} if rate in by_rate else None)
                )
                for rate in fixed_rates
            }
        for name, section in (("10x20", latency), ("1x1000", config.get("fanout")),
                              ("spectators", config.get("spectators"))):  # fmt: skip
            if section and "steps" in section:
                row[f"capacity_{name}"] = section["capacity_delivered_per_s"]
                row[f"capacity_{name}_is_floor"] = section["capacity_reached_top"]
                top = _top_passing(section)
                row[f"us_per_copy_{name}"] = top.get("web_us_per_copy") if top else None
        fanout = config.get("fanout")
        if fanout and "connect" in fanout:
            row["connect_1x1000_s"] = fanout["connect"]["seconds"]
        spectators = config.get("spectators")
        if spectators and "steps" in spectators:
            row["spectators_connected"] = spectators["connect"]["connections"]
            row["spectators_asked"] = spectators["connect"]["asked"]
            row["spectators_cut_off"] = spectators["cut_off"]
        handshake = config.get("handshake")
        if handshake and "seconds" in handshake:
            row["handshake"] = {k: handshake.get(k) for k in HANDSHAKE_FIGURES}
            cold = handshake.get("cold") or {}
            row["handshake"]["cold_seconds"] = cold.get("seconds")
            row["handshake"]["cold_per_s_per_web_process"] = cold.get("per_s_per_web_process")
        storm = config.get("storm")
        if storm and "seconds" in storm:
            row["storm"] = {k: storm.get(k) for k in STORM_FIGURES}
            row["storm"]["lost_after"] = storm["check"].get("lost")
        memory = config.get("memory")
        if memory and "kib_per_connection" in memory:
            row["kib_per_connection"] = memory["kib_per_connection"]
            row["memory_connections"] = memory["connections"]
        persistence = config.get("persistence")
        if persistence and "lag_p99_ms" in persistence:
            row["persistence_lag_p50_ms"] = persistence["lag_p50_ms"]
            row["persistence_lag_p99_ms"] = persistence["lag_p99_ms"]
            row["persistence_not_persisted"] = persistence["not_persisted_within_30s"]
        api = config.get("api")
        if api and "http" in api:
            for path in ("http", "socket"):
                row[f"api_{path}_publishes_per_s"] = api[path]["publishes_per_s"]
                row[f"api_{path}_p99_ms"] = api[path]["p99_ms"]
            row["api_lost"] = api["http"]["missing_seqs"] + api["socket"]["missing_seqs"]
            row["api_not_persisted"] = api["not_persisted_within_30s"]
        steps = (
            steps_run(latency)
            + steps_run(fanout)
            + steps_run(spectators)
            + ([persistence["delivery"]] if persistence and "delivery" in persistence else [])
            + ([storm["check"]] if storm and "check" in storm else [])
        )
        row["steps"] = len(steps)
        row["lost"] = sum(s["lost"] for s in steps)
        row["duplicated"] = sum(s["duplicated"] for s in steps)
        row["out_of_order"] = sum(s["out_of_order"] for s in steps)
        row["lost_in_passing_steps"] = sum(s["lost"] for s in steps if s["pass"])
        summary[key] = row
    # How close each configuration comes to the bare reference app on the same server (its ceiling).
    reference = next((r for r in summary.values() if r["reference"]), None)
    if reference is not None:
        for row in summary.values():
            if row["reference"]:
                continue
            ratios = {}
            for name in ("10x20", "1x1000", "spectators"):
                mine, ceiling = row.get(f"capacity_{name}"), reference.get(f"capacity_{name}")
                # No share where the reference passed the ladder's top: its ceiling was not found.
                if mine is not None and ceiling and not reference.get(f"capacity_{name}_is_floor"):
                    ratios[f"capacity_{name}"] = round(mine / ceiling, 3)
                mine, ceiling = row.get(f"us_per_copy_{name}"), reference.get(f"us_per_copy_{name}")
                if mine and ceiling:
                    ratios[f"us_per_copy_{name}"] = round(mine / ceiling, 2)
            mine, ceiling = row.get("handshake"), reference.get("handshake")
            if mine and ceiling and mine["seconds"] and ceiling["seconds"]:
                ratios["handshake_seconds"] = round(mine["seconds"] / ceiling["seconds"], 2)
            row["vs_reference"] = ratios
    return summary


def targets(results: dict) -> dict:
    out = {}
    for key, row in results["summary"].items():
        checks = {}
        if "capacity_10x20" in row:
            checks["capacity_10x20"] = row["capacity_10x20"] >= LADDER_TARGET
        if "capacity_1x1000" in row:
            checks["capacity_1x1000"] = row["capacity_1x1000"] >= LADDER_TARGET
        if "spectators_cut_off" in row:
            checks["spectators"] = (
                row["spectators_cut_off"] == 0
                and row["spectators_connected"] == row["spectators_asked"]
                and row.get("capacity_spectators", 0) > 0
            )
        if "handshake" in row:
            checks["handshake"] = bool(row["handshake"]["pass"])
        if "storm" in row:
            checks["storm"] = bool(row["storm"]["pass"])
        per_copy = [row[k] for k in ("us_per_copy_10x20", "us_per_copy_1x1000") if row.get(k) is not None]
        if per_copy:
            checks["cpu_per_copy"] = max(per_copy) <= CPU_PER_COPY_US
        if "kib_per_connection" in row:
            checks["memory"] = row["kib_per_connection"] < MEMORY_KIB
        if "persistence_lag_p99_ms" in row:
            checks["persistence"] = row["persistence_lag_p99_ms"] is not None and row["persistence_lag_p99_ms"] < 1000
        out[key] = checks
    return out
