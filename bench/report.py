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
            "p99_limit_ms": runner.P99_LIMIT_MS,
            "channel_layer": runner.CHANNEL_LAYER,
            "database": runner.fixtures.database_name(plan.database_url),
            "redis": plan.redis_url,
            "web_commands": {k: v.command for k, v in runner.SERVERS.items()},
        },
    }
    results["summary"] = summarise(results)
    results["targets"] = targets(results)
    return results


# --- summary --------------------------------------------------------------------------


def _steps(section: dict | None) -> list[dict]:
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
            _steps(latency)
            + _steps(fanout)
            + _steps(spectators)
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


# --- text ------------------------------------------------------------------------------


def _ms(value) -> str:
    return "-" if value is None else (f"{value:.1f}" if value < 100 else f"{value:.0f}")


def _rate(row: dict, key: str) -> str:
    if key not in row:
        return "-"
    value = row[key]
    text = f"{value / 1000:g}k" if value else "<first"
    return text + ("+" if row.get(f"{key}_is_floor") else "")


def _us(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(row: dict, key: str) -> str:
    value = (row.get("vs_reference") or {}).get(key)
    return "" if value is None else f" ({value:.0%})"


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    plan = results["meta"]["plan"]
    rates = plan["fixed_rates"]
    header = ["configuration"]
    header += [f"{r / 1000:g}k/s p50/p99 ms" for r in rates]
    header += ["max 10x20 (of bare)", "µs/copy 10x20", "max 1x1000 (of bare)", "µs/copy 1x1000",
               "spectators: max / cut off", f"{plan.get('handshake_clients', 1000):,} handshakes s (retries)",
               f"{plan.get('storm_clients', 2000):,} back after storm s (retries)",
               "KiB/idle conn", "persist p99 ms", "publishes/s p99 ms: HTTP API / socket", "lost/dup/ooo"]  # fmt: skip
    rows = []
    for key, row in results["summary"].items():
        if not _measured(results["configs"][key]):
            continue  # the Markdown report says why ("Not measured")
        cells = [row["label"]]
        for rate in rates:
            fixed = (row.get("fixed") or {}).get(str(rate))
            if not fixed:
                cells.append("-")
            elif "skipped" in fixed:
                cells.append("saturated")
            else:
                cells.append(f"{_ms(fixed['p50_ms'])} / {_ms(fixed['p99_ms'])}" + ("" if fixed["pass"] else " ✗"))
        cells.append(_rate(row, "capacity_10x20") + _ratio(row, "capacity_10x20"))
        cells.append(_us(row.get("us_per_copy_10x20")) if "capacity_10x20" in row else "-")
        cells.append(_rate(row, "capacity_1x1000") + _ratio(row, "capacity_1x1000"))
        cells.append(_us(row.get("us_per_copy_1x1000")) if "capacity_1x1000" in row else "-")
        if "spectators_cut_off" in row:
            missing = row["spectators_asked"] - row["spectators_connected"]
            cells.append(
                f"{_rate(row, 'capacity_spectators')} / {row['spectators_cut_off']}"
                + (f" ({missing} never in)" if missing else "")
            )
        else:
            cells.append("-")
        hs = row.get("handshake")
        cells.append(
            "-"
            if not hs
            else (f"cold {hs['cold_seconds']:g} / " if hs.get("cold_seconds") is not None else "")
            + f"{hs['seconds']:g} ({hs['retries_1013']}+{hs['retries_other']})"
            + ("" if hs["pass"] else " ✗")
        )
        storm = row.get("storm")
        cells.append(
            "-"
            if not storm
            else f"{storm['seconds']:g} ({storm['retries_1013']}+{storm['retries_other']})"
            + ("" if storm["pass"] else " ✗")
        )
        cells.append("-" if "kib_per_connection" not in row else f"{row['kib_per_connection']:.1f}")
        cells.append(_ms(row.get("persistence_lag_p99_ms")) if "persistence_lag_p99_ms" in row else "-")
        cells.append(
            f"{row['api_http_publishes_per_s']:,.0f} {_ms(row['api_http_p99_ms'])} / "
            f"{row['api_socket_publishes_per_s']:,.0f} {_ms(row['api_socket_p99_ms'])}"
            if "api_http_publishes_per_s" in row
            else "-"
        )
        cells.append(f"{row['lost']}/{row['duplicated']}/{row['out_of_order']}")
        rows.append(cells)
    return header, rows


def text_table(results: dict) -> str:
    header, rows = table_rows(results)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("✗: p99 ≥ 100 ms, something lost or a connection cut off at that rate, or a target missed;")
    lines.append("saturated: not run, a lower rate already had p99 > 2 s; '+': the ladder's top rate passed (a floor);")
    lines.append("<first: the ladder's first rate failed; (of bare): share of the bare reference app's figure;")
    lines.append("µs/copy: web CPU per delivered copy at the highest passing step; retries: after 1013 + other;")
    lines.append("lost/dup/ooo: summed over every step, failing ones included")
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --- plot -------------------------------------------------------------------------------


PLOT_PANELS = (
    ("latency", "10 rooms x 20 members"),
    ("fanout", "1 room x 1,000 members"),
    ("spectators", "1 room x 1,000 members + spectators"),
)


def plot_latency(results: dict, path: Path) -> None:
    """p50 and p99 against the delivered rate measured, one line per configuration, a panel per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [(n, t) for n, t in PLOT_PANELS if any(_steps(c.get(n)) for c in results["configs"].values())]
    panels = panels or list(PLOT_PANELS[:2])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), squeeze=False)
    for ax, (section, title) in zip(axes[0], panels, strict=True):
        for i, config in enumerate(results["configs"].values()):
            steps = [s for s in _steps(config.get(section)) if s["p99_ms"] is not None and s["delivered_per_s"]]
            if not steps:
                continue
            xs = [s["delivered_per_s"] for s in steps]
            color = f"C{i}"
            style = "s-" if config.get("reference") else "o-"
            ax.plot(xs, [s["p99_ms"] for s in steps], style, color=color, label=f"{config['label']} p99")
            ax.plot(xs, [s["p50_ms"] for s in steps], "x--", color=color, alpha=0.6, label=f"{config['label']} p50")
            for s in steps:
                if s["lost"] or s.get("closed_members"):
                    ax.annotate("lost" if s["lost"] else "cut off", (s["delivered_per_s"], s["p99_ms"]),
                                fontsize=7, color=color)  # fmt: skip
        ax.axhline(runner.P99_LIMIT_MS, color="red", linewidth=0.8, linestyle=":")
        ax.axvline(LADDER_TARGET, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("delivered messages per second (measured)")
        ax.set_ylabel("send → receipt latency (ms)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=1)
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
    return markdown_table(*_step_rows(section.get("steps", [])))


def _step_rows(steps: list[dict]) -> tuple[list[str], list[list]]:
    header = ["target delivered/s", "sends/s", "delivered/s", "p50 ms", "p99 ms", "max ms", "ack p99 ms",
              "lost", "dup", "ooo", "errors", "cut off", "web µs/copy", "cores: web / worker / others",
              "result"]  # fmt: skip
    rows = []
    for s in steps:
        if "skipped" in s:
            rows.append([f"{s['target_delivered_per_s']:,}"] + [""] * (len(header) - 2) + [s["skipped"]])
            continue
        rows.append([
            f"{s['target_delivered_per_s']:,}", f"{s['sends_per_s']:g}", f"{s['delivered_per_s']:,}",
            _ms(s["p50_ms"]), _ms(s["p99_ms"]), _ms(s["max_ms"]), _ms(s["ack_p99_ms"]),
            s["lost"], s["duplicated"], s["out_of_order"], s["send_errors"] + s["unacked"],
            s.get("closed_members", 0), _us(s.get("web_us_per_copy")), _cores(s),
            "pass" if s["pass"] else f"fail: {s['why_not']}",
        ])  # fmt: skip
    return header, rows


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


def kept_between(text: str, start: str, end: str) -> str:
    """The part of ``text`` from the marker ``start`` to the marker ``end`` (both kept), or ""."""
    at, until = text.find(start), text.find(end)
    if at < 0 or until < at:
        return ""
    return text[at : until + len(end)]


def write_section(path: Path, section: str, *, start: str, end: str, after: tuple[str, ...]) -> None:
    """Put ``section`` (marked by ``start`` and ``end``) into the report at ``path``: in place of
    the one there, or else after the first of the markers ``after`` found, or else at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    old = kept_between(text, start, end)
    if old:
        text = text.replace(old, section)
    else:
        for anchor in after:
            at = text.find(anchor)
            if at >= 0:
                cut = at + len(anchor)
                text = text[:cut] + "\n\n" + section + text[cut:]
                break
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def kept_analysis(docs_path: Path) -> str:
    """The hand-written part of an earlier report, which a new run carries over."""
    return kept_between(docs_path.read_text(), ANALYSIS_START, ANALYSIS_END) if docs_path.exists() else ""


def kept_search(docs_path: Path) -> str:
    """The search section (``python -m bench.search`` writes it), which a new run carries over."""
    from bench.search import kept_section

    return kept_section(docs_path.read_text()) if docs_path.exists() else ""


def kept_scale(docs_path: Path) -> str:
    """The connections-at-scale section (``python -m bench.scale`` writes it), which a new run carries over."""
    from bench.scale_report import kept_section

    return kept_section(docs_path.read_text()) if docs_path.exists() else ""


def _section_errors(config: dict) -> dict[str, str]:
    return {k: v["error"] for k, v in config.items() if isinstance(v, dict) and "error" in v}


def _measured(config: dict) -> bool:
    """Did any section of the configuration give figures?"""
    return any(isinstance(v, dict) and "error" not in v for v in config.values())


def _connect_md(c: dict) -> str:
    each = c.get("each") or {}
    return (
        f"{c['connections']:,} of {c.get('asked', c['connections']):,} in {c['seconds']} s"
        f" ({c.get('per_s')}/s; each p50 {each.get('p50_s')} s, p99 {each.get('p99_s')} s),"
        f" {c['failed']} failed, {c.get('skipped_after_budget', 0)} not tried within the time budget;"
        f" tries again: {c.get('retries_1013', 0)} after a 1013 close, {c.get('retries_other', 0)} after other"
        " failures"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in c["retry_reasons"].items()) + ")" if c.get("retry_reasons") else "")
    )


CEILINGS = (("capacity_10x20", "10 x 20"), ("capacity_1x1000", "1 x 1,000"), ("capacity_spectators", "spectators"))


def _ceiling_md(results: dict) -> list[str]:
    reference = next((r for r in results["summary"].values() if r.get("reference")), None)
    if reference is None:
        return ["No bare reference run in this run: the figures say nothing about the server's own ceiling.", ""]
    lines = [
        f"**Against the ceiling**: the bare reference app ({reference['label']}, `bench/bare.py`: the same frames"
        " and the same Redis work, no Django, no Channels) held "
        + ", ".join(f"{_rate(reference, k)}/s in {n}" for k, n in CEILINGS if k in reference)
        + "."
    ]
    for row in results["summary"].values():
        ratios = row.get("vs_reference")
        if row.get("reference") or not ratios:
            continue
        parts = []
        for name in ("10x20", "1x1000", "spectators"):
            if f"capacity_{name}" in ratios:
                parts.append(f"{ratios[f'capacity_{name}']:.0%} of its max rate in {name}")
            if f"us_per_copy_{name}" in ratios:
                parts.append(f"{ratios[f'us_per_copy_{name}']:g}x its web CPU per copy in {name}")
        if "handshake_seconds" in ratios:
            parts.append(f"{ratios['handshake_seconds']:g}x its time for the handshakes")
        lines.append(f"- {row['label']}: " + "; ".join(parts))
    return [*lines, ""]


def markdown(results: dict, *, plot_path: Path, docs_path: Path) -> str:
    meta = results["meta"]
    m = meta["machine"]
    plan = meta["plan"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    header, rows = table_rows(results)
    commands = [f"  - {config['label']}: `{config['web_command']}`" for config in results["configs"].values()]
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
        " (`python manage.py jobs_worker`, persistence on) beside the web process(es); `DEBUG=0`,"
        f" `LOG_LEVEL=WARNING`, `CHANNEL_LAYER={plan.get('channel_layer', 'pubsub')}`",
        "- web commands (one web process each unless the label says otherwise):",
        *commands,
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
        " Max: the highest step of the ladder with p99 < 100 ms, every send acked, nothing lost, duplicated"
        " or out of order and no connection cut off (a '+' means the top of the ladder passed); in brackets, its"
        " share of the bare reference app's. µs/copy: web CPU seconds over the copies delivered, at that step."
        " ✗: that fixed rate failed those conditions, or the scenario missed its target.",
        "",
        *_ceiling_md(results),
    ]
    unmeasured = [c for c in results["configs"].values() if not _measured(c)]
    if unmeasured:
        out += ["**Not measured** (no section gave figures):", ""]
        out += [f"- {c['label']}: " + "; ".join(f"{k}: {v}" for k, v in _section_errors(c).items())
                for c in unmeasured]  # fmt: skip
        out += [""]
    out += [f"![latency against delivered rate]({os.path.relpath(plot_path, docs_path.parent)})", "", "## Targets", ""]
    target_rows = []
    for name, text in TARGETS.items():
        met = [results["summary"][k]["label"] for k, c in results["targets"].items() if c.get(name)]
        missed = [results["summary"][k]["label"] for k, c in results["targets"].items() if c.get(name) is False]
        target_rows.append([text, ", ".join(met) or "none", ", ".join(missed) or "-"])
    out += [markdown_table(["target", "met by", "missed by"], target_rows), ""]
    analysis = kept_analysis(docs_path)
    if analysis:
        out += [analysis, ""]
    search = kept_search(docs_path)
    if search:
        out += [search, ""]
    scale = kept_scale(docs_path)  # `make bench-scale` writes it (bench/scale.py)
    if scale:
        out += [scale, ""]
    out += ["## Detail", ""]
    for config in results["configs"].values():
        out += [f"### {config['label']}", "", f"web: `{config['web_command']}`", ""]
        for name, error in _section_errors(config).items():
            out += [f"{name}: failed ({error})", ""]
        for name, title in (("latency", "10 rooms x 20 members"), ("fanout", "1 room x 1,000 members"),
                            ("spectators", "the fan-out room with spectators")):  # fmt: skip
            section = config.get(name)
            if not section or "error" in section:
                continue
            if name == "spectators":
                title = section["shape"]
            out += [
                f"**{title}** (connected: {_connect_md(section['connect'])}; max rate"
                f" {section['capacity_delivered_per_s']:,}/s):",
                "",
                _steps_table(section),
                "",
            ]
        handshake = config.get("handshake")
        if handshake and "error" not in handshake:
            cold = handshake.get("cold")
            out += [
                f"**Handshakes**: {handshake['clients']:,} clients, {handshake['concurrency']} handshakes at a time,"
                f" each connecting and subscribing, as members: {_connect_md(handshake)}."
                f" {handshake['per_s_per_web_process']}/s per web process; web CPU {handshake['web_cpu_s']} s"
                f" ({handshake['web_ms_per_handshake']} ms a handshake)."
                + (
                    f" Cold (each first subscribe joins its public room): {_connect_md(cold)},"
                    f" {cold['per_s_per_web_process']}/s per web process ({handshake['cold_vs_warm']}x the warm time)."
                    if cold
                    else ""
                )
                + (" Target met." if handshake["pass"] else " Target missed."),
                "",
            ]
        storm = config.get("storm")
        if storm and "error" not in storm:
            out += [
                f"**Reconnect storm**: {storm['before']['connections']:,} subscribed clients (connected in"
                f" {storm['before']['seconds']} s) lost their connections at once; back: {_connect_md(storm)}"
                f" (web CPU {storm['web_cpu_s']} s). Then at {storm['check']['target_delivered_per_s']:,}"
                " delivered/s:",
                "",
                markdown_table(*_step_rows([storm["check"]])),
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
                f" lost {d['lost']}, web {_us(d.get('web_us_per_copy'))} µs/copy.",
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
        "- Each step sends `delivered / connections` messages a second, spread round-robin over the members that"
        " send (spectators only receive); a body starts with `time.monotonic_ns()` at send (one clock for every"
        " process of the machine), so each receipt gives a latency. Bodies are about 220 characters.",
        "- Per member and room, `seq` is checked against the room's acked range of the step: missing = lost, seen"
        " twice = duplicated, lower than one already seen = out of order. A connection closed by the server during"
        " a step is cut off, and fails the step.",
        "- Web CPU per delivered copy: user + system CPU of the web process(es) (and their children) over the"
        " step, sending and draining, divided by the copies delivered; it includes the sends, acks and Redis work.",
        f"- Handshakes and the storm: a client whose connection is closed or refused before it is subscribed"
        f" tries again after the browser client's backoff (`static/js/socket.js`: 0.5-1 s after a 1013 close,"
        f" doubling after connections that never opened). `handshake`: {plan.get('handshake_concurrency') or 'all'}"
        " handshakes at a time, cold (users not yet members of the public rooms: each first subscribe joins, a"
        " write) then warm (the same users again); time from the first to the last `subscribed`."
        " `storm`: every connection dropped"
        " at once (no close frame), every client back after its first backoff (0.5-1 s), all at once,"
        " resubscribing with `since`; time from the drop to the last `subscribed`.",
        "- The bare reference app (`bench/bare.py`) runs the project's append script and one PUBLISH per send,"
        " one Redis SUBSCRIBE per room per process, and writes each frame, encoded once, to every local socket:"
        " what the server and Redis allow, without Django and Channels. It queues the project's persistence job"
        " as the site does.",
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
