"""Figures out of a run: the machine, a text table, targets, Markdown and the latency plot."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from bench import runner

PACKAGES = [
    "Django", "channels", "channels-redis", "daphne", "Twisted", "autobahn", "uvicorn", "websockets", "httptools",
    "uvloop", "redis", "psycopg", "rq", "django-rq", "orjson", "picows",
]  # fmt: skip

TARGETS = {
    "capacity_10x20": "10 rooms x 20 members: ≥ 30,000 delivered msg/s at p99 < 100 ms, persistence on, 0 lost",
    "latency_5k": "at 5,000 delivered/s: p50 < 5 ms and p99 < 25 ms",
    "memory": "< 40 KiB server memory per idle connection",
    "persistence": "persistence lag (ack → row in PostgreSQL) p99 < 1 s at 1,000 msg/s",
}


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


def service_versions(plan: runner.Plan) -> dict:
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
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=runner.ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def run_and_describe(plan: runner.Plan, *, command: str, quick: bool) -> dict:
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
            "fanout_ladder": plan.fanout_ladder,
            "persistence_rate": plan.persistence_rate,
            "persistence_shape": plan.persistence_shape,
            "memory_connections": plan.memory_connections,
            "memory_room_size": plan.memory_room_size,
            "memory_warmup": plan.memory_warmup,
            "profile_rate": plan.profile_rate,
            "p99_limit_ms": runner.P99_LIMIT_MS,
            "database": runner.fixtures.database_name(plan.database_url),
            "redis": plan.redis_url,
            "web_commands": {k: v or "Procfile web: daphne" for k, v in runner.WEB_COMMANDS.items()},
        },
    }
    results["summary"] = summarise(results)
    results["targets"] = targets(results)
    return results


# --- summary --------------------------------------------------------------------------


def _steps(section: dict | None) -> list[dict]:
    return [s for s in (section or {}).get("steps", []) if "skipped" not in s]


def summarise(results: dict) -> dict:
    summary = {}
    for key, config in results["configs"].items():
        row: dict = {"label": config["label"]}
        latency = config.get("latency")
        if latency and "steps" in latency:
            by_rate = {s["target_delivered_per_s"]: s for s in latency["steps"]}
            row["fixed"] = {
                str(rate): (
                    {k: by_rate[rate].get(k) for k in ("p50_ms", "p99_ms", "max_ms", "pass", "delivered_per_s")}
                    if rate in by_rate and "skipped" not in by_rate[rate]
                    else ({"skipped": by_rate[rate]["skipped"]} if rate in by_rate else None)
                )
                for rate in results["meta"]["plan"]["fixed_rates"]
            }
            row["capacity_10x20"] = latency["capacity_delivered_per_s"]
            row["capacity_10x20_is_floor"] = latency["capacity_reached_top"]
        fanout = config.get("fanout")
        if fanout and "steps" in fanout:
            row["capacity_1x1000"] = fanout["capacity_delivered_per_s"]
            row["capacity_1x1000_is_floor"] = fanout["capacity_reached_top"]
            row["connect_1x1000_s"] = fanout["connect"]["seconds"]
        memory = config.get("memory")
        if memory and "kib_per_connection" in memory:
            row["kib_per_connection"] = memory["kib_per_connection"]
            row["memory_connections"] = memory["connections"]
        persistence = config.get("persistence")
        if persistence and "lag_p99_ms" in persistence:
            row["persistence_lag_p50_ms"] = persistence["lag_p50_ms"]
            row["persistence_lag_p99_ms"] = persistence["lag_p99_ms"]
            row["persistence_not_persisted"] = persistence["not_persisted_within_30s"]
        steps = (
            _steps(latency)
            + _steps(fanout)
            + ([persistence["delivery"]] if persistence and "delivery" in persistence else [])
        )
        row["steps"] = len(steps)
        row["lost"] = sum(s["lost"] for s in steps)
        row["duplicated"] = sum(s["duplicated"] for s in steps)
        row["out_of_order"] = sum(s["out_of_order"] for s in steps)
        row["lost_in_passing_steps"] = sum(s["lost"] for s in steps if s["pass"])
        summary[key] = row
    return summary


def targets(results: dict) -> dict:
    out = {}
    for key, row in results["summary"].items():
        checks = {}
        if "capacity_10x20" in row:
            checks["capacity_10x20"] = row["capacity_10x20"] >= 30000
        five = (row.get("fixed") or {}).get("5000")
        if five is not None:
            checks["latency_5k"] = five.get("p50_ms") is not None and five["p50_ms"] < 5 and five["p99_ms"] < 25
        if "kib_per_connection" in row:
            checks["memory"] = row["kib_per_connection"] < 40
        if "persistence_lag_p99_ms" in row:
            checks["persistence"] = row["persistence_lag_p99_ms"] is not None and row["persistence_lag_p99_ms"] < 1000
        out[key] = checks
    return out


# --- text ------------------------------------------------------------------------------


def _ms(value) -> str:
    return "-" if value is None else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def _rate(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    value = row[key]
    text = f"{value / 1000:g}k" if value else "<first"
    return text + ("+" if row.get(f"{key}_is_floor") else "")


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    rates = results["meta"]["plan"]["fixed_rates"]
    header = ["configuration"]
    header += [f"{r / 1000:g}k/s p50/p99 ms" for r in rates]
    header += ["max rate 10x20", "max rate 1x1000", "KiB/idle conn", "persist p99 ms", "lost/dup/ooo"]
    rows = []
    for row in results["summary"].values():
        cells = [row["label"]]
        for rate in rates:
            fixed = (row.get("fixed") or {}).get(str(rate))
            if not fixed:
                cells.append("-")
            elif "skipped" in fixed:
                cells.append("saturated")
            else:
                cells.append(f"{_ms(fixed['p50_ms'])} / {_ms(fixed['p99_ms'])}" + ("" if fixed["pass"] else " ✗"))
        cells.append(_rate(row, "capacity_10x20"))
        cells.append(_rate(row, "capacity_1x1000"))
        cells.append("-" if "kib_per_connection" not in row else f"{row['kib_per_connection']:.1f}")
        cells.append(_ms(row.get("persistence_lag_p99_ms")) if "persistence_lag_p99_ms" in row else "-")
        cells.append(f"{row['lost']}/{row['duplicated']}/{row['out_of_order']}")
        rows.append(cells)
    return header, rows


def text_table(results: dict) -> str:
    header, rows = table_rows(results)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("✗: p99 ≥ 100 ms or something lost at that rate; saturated: not run, a lower rate already had")
    lines.append("p99 > 2 s; '+': the ladder's top rate passed (a floor); <first: the ladder's first rate failed")
    lines.append("lost/dup/ooo: summed over every step, failing ones included")
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --- plot -------------------------------------------------------------------------------


def plot_latency(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, section, title in (
        (axes[0], "latency", "10 rooms x 20 members"),
        (axes[1], "fanout", "1 room x 1,000 members"),
    ):
        for i, config in enumerate(results["configs"].values()):
            steps = _steps(config.get(section))
            if not steps:
                continue
            xs = [s["target_delivered_per_s"] for s in steps]
            color = f"C{i}"
            ax.plot(xs, [s["p99_ms"] for s in steps], "o-", color=color, label=f"{config['label']} p99")
            ax.plot(xs, [s["p50_ms"] for s in steps], "x--", color=color, alpha=0.6, label=f"{config['label']} p50")
            for s in steps:
                if s["lost"]:
                    ax.annotate("lost", (s["target_delivered_per_s"], s["p99_ms"]), fontsize=7, color=color)
        ax.axhline(runner.P99_LIMIT_MS, color="red", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("delivered messages per second (sends/s x members)")
        ax.set_ylabel("send → receipt latency (ms)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    m = results["meta"]["machine"]
    fig.suptitle(f"pubsub latency vs delivered rate — {m['nproc']} cores, {m['cpu']}, Python {m['python']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- Markdown ----------------------------------------------------------------------------


def _cores(step: dict) -> str:
    c = step.get("cores_used") or {}
    return f"{c.get('web', 0):.2f} / {c.get('worker', 0):.2f} / {c.get('rest', 0):.2f}" if c else ""


def _steps_table(section: dict) -> str:
    header = ["target delivered/s", "sends/s", "delivered/s", "p50 ms", "p99 ms", "max ms", "ack p99 ms",
              "lost", "dup", "ooo", "errors", "cores: web / worker / others", "result"]  # fmt: skip
    rows = []
    for s in section.get("steps", []):
        if "skipped" in s:
            rows.append([f"{s['target_delivered_per_s']:,}"] + [""] * 11 + [s["skipped"]])
            continue
        rows.append([
            f"{s['target_delivered_per_s']:,}", f"{s['sends_per_s']:g}", f"{s['delivered_per_s']:,}",
            _ms(s["p50_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]), _ms(s["ack_p99_ms"]),
            s["lost"], s["duplicated"], s["out_of_order"], s["send_errors"] + s["unacked"], _cores(s),
            "pass" if s["pass"] else f"fail: {s['why_not']}",
        ])  # fmt: skip
    return markdown_table(header, rows)


def _profile_md(profile: dict) -> str:
    if "skipped" in profile or "error" in profile:
        return f"Not profiled: {profile.get('skipped') or profile.get('error')}\n"
    d = profile["delivery"]
    parts = [
        f"py-spy (`record --rate 100 --format raw --nonblocking`, idle threads excluded) on the web process for"
        f" {d['duration_s']:g} s while 10 rooms x 20 members took {d['target_delivered_per_s']:,} delivered/s"
        f" (p50 {_ms(d['p50_ms'])} ms, p99 {_ms(d['p99_ms'])} ms): {profile['samples']} samples.\n",
        "Where the process spends its time, by library (self time of the innermost frame):\n",
        markdown_table(["area", "share"], [[a["area"], f"{a['percent']}%"] for a in profile["by_area"]]),
        "\nTop functions by self time:\n",
        markdown_table(["function", "self"], [[f"`{f['function']}`", f"{f['percent']}%"] for f in profile["self"]]),
        "\nTop functions by inclusive time (on the stack):\n",
        markdown_table(
            ["function", "inclusive"], [[f"`{f['function']}`", f"{f['percent']}%"] for f in profile["inclusive"]]
        ),
    ]
    return "\n".join(parts) + "\n"


ANALYSIS_START = "<!-- analysis: written by hand, kept by the next run -->"
ANALYSIS_END = "<!-- /analysis -->"


def kept_analysis(docs_path: Path) -> str:
    """The hand-written part of an earlier report, which a new run carries over."""
    if not docs_path.exists():
        return ""
    text = docs_path.read_text()
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ""
    return text[start : end + len(ANALYSIS_END)]


def markdown(results: dict, *, plot_path: Path, docs_path: Path) -> str:
    meta = results["meta"]
    m = meta["machine"]
    plan = meta["plan"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    header, rows = table_rows(results)
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`, the code is in `bench/`). The benchmark starts the servers it"
        " measures on 127.0.0.1 and drives them with its own load generator; nothing here is from another machine.",
        "",
        "## The run",
        "",
        f"- command: `{meta['command']}` (commit {meta['commit']}, {meta['when']}, {results['seconds']:.0f} s)",
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']},"
        f" Python {m['python']}",
        f"- services: PostgreSQL {meta['services']['postgresql']}, Redis {meta['services']['redis']}"
        " (both local, shared with the load generator: everything runs on the same cores)",
        f"- packages: {packages}",
        f"- database `{plan['database']}` (recreated, migrated), Redis `{plan['redis']}` (flushed); one rq worker"
        " (`python manage.py jobs_worker`, persistence on) beside the web process(es); `DEBUG=0`, `LOG_LEVEL=WARNING`",
        f"- web commands: daphne = the Procfile's `web`; uvicorn = `{plan['web_commands']['uvicorn']}`",
        f"- servers run with `WS_RATE_LIMIT_SEND={runner.BENCH_SEND_LIMIT}`: the per-user send limit still runs on"
        " every send but cannot refuse the benchmark's members, who each send faster than a person; the code"
        " measured is the working tree at the time of the run (the commit above plus whatever was not yet"
        " committed)",
        f"- load: {plan['client_processes']} client process(es), uvloop + picows, open loop (sends on a fixed"
        f" schedule, not waiting for acks); {plan['duration_s']:g} s of sending per step, then a drain that waits"
        f" while messages still arrive (it gives up after {plan['drain_timeout_s']:g} s with nothing arriving, or"
        f" {3 * plan['drain_timeout_s']:g} s in all): what has not arrived by then counts as lost; every member"
        " is a signed-in user's connection with its session cookie",
        "",
        "## Headline",
        "",
        markdown_table(header, rows),
        "",
        "p50/p99: latency from send to receipt at every member (the sender included), over every delivered copy."
        " Max rate: the highest step of the ladder with p99 < 100 ms, every send acked and nothing lost, duplicated"
        " or out of order (a '+' means the top of the ladder passed). ✗: that fixed rate failed those conditions.",
        "",
        f"![latency against delivered rate]({os.path.relpath(plot_path, docs_path.parent)})",
        "",
        "## Targets",
        "",
    ]
    target_rows = []
    for name, text in TARGETS.items():
        met = [results["summary"][k]["label"] for k, c in results["targets"].items() if c.get(name)]
        missed = [results["summary"][k]["label"] for k, c in results["targets"].items() if c.get(name) is False]
        target_rows.append([text, ", ".join(met) or "none", ", ".join(missed) or "-"])
    out += [markdown_table(["target", "met by", "missed by"], target_rows), ""]
    analysis = kept_analysis(docs_path)
    if analysis:
        out += [analysis, ""]
    out += ["## Detail", ""]
    for config in results["configs"].values():
        out += [f"### {config['label']}", "", f"web: `{config['web_command']}`, `CHANNEL_LAYER={config['layer']}`", ""]
        for name, title in (("latency", "10 rooms x 20 members"), ("fanout", "1 room x 1,000 members")):
            section = config.get(name)
            if not section:
                continue
            if "error" in section:
                out += [f"{title}: failed ({section['error']})", ""]
                continue
            c = section["connect"]
            out += [
                f"**{title}** ({c['connections']} members connected and subscribed in {c['seconds']} s,"
                f" {c['failed']} failed; max rate {section['capacity_delivered_per_s']:,}/s):",
                "",
                _steps_table(section),
                "",
            ]
        persistence = config.get("persistence")
        if persistence and "lag_p99_ms" in persistence:
            d = persistence["delivery"]
            out += [
                f"**Persistence lag** at {persistence['sends_per_s']:,} messages/s ({persistence['shape']},"
                f" {persistence['acked']:,} acked): ack → row in PostgreSQL p50 {_ms(persistence['lag_p50_ms'])} ms,"
                f" p99 {_ms(persistence['lag_p99_ms'])} ms, max {_ms(persistence['lag_max_ms'])} ms;"
                f" {persistence['not_persisted_within_30s']} not persisted within 30 s (PostgreSQL polled every"
                f" {persistence['poll_interval_ms']:g} ms). Delivery meanwhile: p99 {_ms(d['p99_ms'])} ms,"
                f" lost {d['lost']}.",
                "",
            ]
        memory = config.get("memory")
        if memory and "kib_per_connection" in memory:
            out += [
                f"**Memory**: {memory['connections']:,} idle subscribed connections of {memory.get('asked', '?'):,}"
                f" asked ({memory['failed']} failed, {memory.get('skipped_after_budget', 0):,} not opened within the"
                f" time budget; opened in {memory['connect_seconds']} s, {memory['connections_per_s']}/s) took the"
                f" fresh web process from {memory['rss_before_kib'] / 1024:.1f} MiB to"
                f" {memory['rss_after_kib'] / 1024:.1f} MiB RSS (after {memory['warmup_connections']}"
                f" warm-up connections): **{memory['kib_per_connection']:.1f} KiB per connection**.",
                "",
            ]
        profile = config.get("profile")
        if profile:
            out += ["#### Profile of the web process", "", _profile_md(profile)]
    out += [
        "## Method",
        "",
        "- Users, sessions and rooms are made through Django's ORM in the benchmark's own database; each member is"
        " one WebSocket connection with `Cookie: sessionid=…`, subscribed to one public room (memberships made up"
        " front, as for returning users).",
        "- Each step sends `delivered / members` messages a second, spread round-robin over the members; a body"
        " starts with `time.monotonic_ns()` at send (one clock for every process of the machine), so each receipt"
        " gives a latency. Bodies are about 220 characters.",
        "- Per member and room, `seq` is checked against the room's acked range of the step: missing = lost, seen"
        " twice = duplicated, lower than one already seen = out of order.",
        "- Persistence lag: the time of each ack against the first poll of PostgreSQL (every 20 ms, max `seq` per"
        " room) that shows the row; so it is accurate to about 20 ms.",
        f"- Memory: a fresh web process gets {plan['memory_warmup']} warm-up connections, then RSS (`VmRSS`) is read"
        f" before and after {plan['memory_connections']:,} more idle connections (fewer where the table says so)"
        f" subscribed in rooms of {plan['memory_room_size']}.",
        "- The load generator, PostgreSQL, Redis, the worker and the web process(es) share the machine's cores, so"
        " the figures are a floor for what the server does on its own cores.",
        "",
    ]
    return "\n".join(out)
