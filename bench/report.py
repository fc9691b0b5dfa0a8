"""Figures out of a run, for people: the text table, the latency plot and the Markdown report
(docs/benchmarks.md), from the run's JSON and its summary (``bench.summary``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.docs_sections import ANALYSIS_END, ANALYSIS_START, kept_between
from bench.plan import BENCH_SEND_LIMIT, P99_LIMIT_MS
from bench.summary import LADDER_TARGET, TARGETS, steps_run

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
    panels = [(n, t) for n, t in PLOT_PANELS if any(steps_run(c.get(n)) for c in results["configs"].values())]
    panels = panels or list(PLOT_PANELS[:2])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), squeeze=False)
    for ax, (section, title) in zip(axes[0], panels, strict=True):
        for i, config in enumerate(results["configs"].values()):
            steps = [s for s in steps_run(config.get(section)) if s["p99_ms"] is not None and s["delivered_per_s"]]
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
        ax.axhline(P99_LIMIT_MS, color="red", linewidth=0.8, linestyle=":")
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
        f"- servers run with `WS_RATE_LIMIT_SEND={BENCH_SEND_LIMIT}`: the per-user send limit still runs on"
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
