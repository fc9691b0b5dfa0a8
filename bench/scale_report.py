"""The figures of ``make bench-scale`` (bench/scale.py): a text table, the soak plot, and its
section of docs/benchmarks.md, between markers that ``make bench``'s rewrite keeps."""

from __future__ import annotations

import os
from pathlib import Path

SECTION_START = "<!-- scale: written by bench/scale.py, kept by the next run -->"
SECTION_END = "<!-- /scale -->"


def _n(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}{unit}"
    return f"{int(value):,}{unit}"


def _ok(passed: bool | None) -> str:
    return "" if passed is None else (" ok" if passed else " ✗")


def rows(results: dict) -> list[tuple[str, str, str]]:
    """(figure, value, target) for the table and the Markdown."""
    targets = results.get("meta", {}).get("targets", {})
    out: list[tuple[str, str, str]] = []
    scale = results.get("scale") or {}
    if "error" in scale:
        out.append(("scale run", f"failed: {scale['error']}", ""))
    elif scale:
        c, m, t, lay = scale["connect"], scale["memory"], scale["trickle"], scale["layout"]
        out += [
            (
                "layout",
                f"{c['asked']:,} sockets, {lay['web_processes']} web processes, "
                f"{lay['load_generators']} load generators",
                "",
            ),
            ("connected", f"{c['connected']:,} of {c['asked']:,} ({c['failed']} failed)", "all"),
            (
                "time to connect all",
                f"{_n(c['seconds'], ' s')} ({_n(c['per_s'])}/s)"
                + _ok(c["connected"] == c["asked"] and c["seconds"] < targets.get("connect_s", 120)),
                f"< {targets.get('connect_s', 120):g} s",
            ),
            (
                "web memory a socket",
                f"{_n(m['kib_per_socket'], ' KiB')}"
                + _ok(m["kib_per_socket"] is not None and m["kib_per_socket"] < targets.get("kib_per_socket", 30)),
                f"< {targets.get('kib_per_socket', 30):g} KiB",
            ),
            ("web CPU a handshake", f"{_n(c['web_ms_per_handshake'], ' ms')}", ""),
            ("load generators' CPU a handshake", f"{_n(c['clients_ms_per_handshake'], ' ms')}", ""),
            (
                "cores while connecting (web / clients / machine)",
                f"{c['cores']['web']} / {c['cores']['clients']} / {c['cores']['machine']}",
                "",
            ),
            ("web CPU an idle socket", f"{_n(scale['idle']['web_us_per_socket_second'], ' µs/s')}", ""),
            (
                f"trickle ({t['sends_per_s']} sends/s, {t['seconds']:g} s): p50 / p99",
                f"{_n(t['p50_ms'], ' ms')} / {_n(t['p99_ms'], ' ms')}"
                + _ok(t["p99_ms"] is not None and t["p99_ms"] < targets.get("trickle_p99_ms", 200)),
                f"p99 < {targets.get('trickle_p99_ms', 200):g} ms",
            ),
            (
                "trickle: sent, acked, delivered, lost, duplicated",
                f"{t['sent']:,}, {t['acked']:,}, {t['delivered']:,}, {t['lost']}, {t['duplicated']}"
                + _ok(t["lost"] == 0 == t["duplicated"] and t["acked"] == t["sent"] > 0),
                "all acked, 0 lost",
            ),
            (
                "cores in the trickle (web / clients / machine)",
                f"{t['cores']['web']} / {t['cores']['clients']} / {t['cores']['machine']}",
                "",
            ),
        ]
        storm = scale.get("storm")
        if storm:
            w = storm["window"]
            all_back = storm["still_out"] == 0 and storm["failed"] == 0
            out += [
                (
                    "storm: SIGKILL",
                    f"{storm['killed_processes']} web processes, {storm['sockets_dropped']:,} sockets",
                    "",
                ),
                (
                    "storm: all back on the others in",
                    (
                        _n(storm["seconds_to_all_back"], " s")
                        if storm["seconds_to_all_back"]
                        else f"not all within {storm.get('waited_s', '?')} s"
                    )
                    + f" ({storm['still_out']} still out, {storm['failed']} failed)"
                    + _ok(all_back and (storm["seconds_to_all_back"] or 1e9) < targets.get("storm_s", 60)),
                    f"< {targets.get('storm_s', 60):g} s",
                ),
                (
                    "storm window: acked, delivered, lost, duplicated",
                    f"{w['acked']:,}, {w['delivered']:,}, {w['lost']}, {w['duplicated']}"
                    + _ok(w["lost"] == 0 == w["duplicated"]),
                    "0 lost",
                ),
            ]
    soak = results.get("soak") or {}
    if "error" in soak:
        out.append(("soak", f"failed: {soak['error']}", ""))
    elif soak:
        s, leak = soak["summary"], soak["leak"]
        minutes = results.get("meta", {}).get("plan", {}).get("soak_minutes", "?")
        out += [
            ("soak", f"{soak['connected']:,} sockets, {minutes} min at {soak['rate']:g} sends/s", ""),
            ("soak: web RSS first → last", f"{s.get('rss_mib_first')} → {s.get('rss_mib_last')} MiB", "flat"),
            ("soak: Redis memory first → last", f"{s.get('redis_mib_first')} → {s.get('redis_mib_last')} MiB", "flat"),
            ("soak: p99 median / max", f"{_n(s.get('p99_ms_median'), ' ms')} / {_n(s.get('p99_ms_max'), ' ms')}", ""),
            ("soak: lost, duplicated", f"{s.get('lost')}, {s.get('duplicated')}" + _ok(s.get("lost") == 0), "0"),
            (
                "after everyone left",
                ", ".join(f"{k} {v:g}" for k, v in leak.items() if k not in ("clean", "seconds")) + _ok(leak["clean"]),
                "all 0",
            ),
        ]
    return out


def text_table(results: dict) -> str:
    table = rows(results)
    if not table:
        return "(nothing measured)"
    width = max(len(r[0]) for r in table)
    vwidth = max(len(r[1]) for r in table)
    return "\n".join(f"{a:<{width}}  {b:<{vwidth}}  {c}" for a, b, c in table)


def plot_soak(results: dict, path: Path) -> bool:
    """Web RSS, cores, p99 and Redis memory over the soak; False when there was no soak."""
    samples = (results.get("soak") or {}).get("samples")
    if not samples:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    t = [s["t_s"] / 60 for s in samples]
    panels = [
        ("web_rss_mib", "web RSS, all processes (MiB)"),
        ("web_cores", "web CPU (cores)"),
        ("p99_ms", "p99 send → receipt (ms)"),
        ("redis_mib", "Redis used_memory (MiB)"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        ys = [s[key] for s in samples]
        ax.plot(t, ys, "o-", markersize=2)
        if key == "web_cores":
            ax.plot(t, [s["clients_cores"] for s in samples], "x--", markersize=2, alpha=0.6, label="load generators")
            ax.legend(fontsize=7)
        lost = [(x, y) for x, y, s in zip(t, ys, samples, strict=True) if s["lost"] and y is not None]
        if lost:
            ax.plot(*zip(*lost, strict=True), "rx", label="lost")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    soak = results["soak"]
    m = results.get("meta", {}).get("machine", {})
    fig.suptitle(f"soak: {soak['connected']:,} sockets, {soak['rate']:g} sends/s — {m.get('nproc', '?')} cores,"
                 f" load average {soak['summary'].get('load1_mean')}", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def markdown(results: dict, plot: Path | None, docs: Path) -> str:
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    plan = meta.get("plan", {})
    scale = results.get("scale") or {}
    lines = [
        SECTION_START,
        "## Connections at scale",
        "",
        f"Written by `make bench-scale` (`{meta.get('command')}`, {meta.get('when')}, commit {meta.get('commit')},"
        f" {results.get('seconds', 0):.0f} s) on {m.get('nproc')} cores ({m.get('cpu')}), {m.get('ram_gib')} GiB,"
        f" Linux {m.get('kernel')}, PostgreSQL {meta.get('services', {}).get('postgresql')}, Redis"
        f" {meta.get('services', {}).get('redis')}; every process (web, worker, load generators, PostgreSQL, Redis)"
        f" on the same cores. A process may open {results.get('open_files_limit', '?'):,} files here (a hard limit),"
        " so the sockets are spread over several web processes on consecutive ports and over load-generator"
        " processes, each connecting from a source address of its own (127.0.0.2, .3, …).",
        "",
        "How to run it: `make bench-scale` (defaults `SCALE_SOCKETS=100000 STORM_SOCKETS=50000 SOAK_SOCKETS=20000"
        " SOAK_MINUTES=30`: about 45 minutes on a quiet 2-core machine, longer while handshakes are slow; every"
        " other option through `BENCH_ARGS`, see `python -m bench.scale --help`). It needs ~1 GiB of memory per"
        " 10,000 sockets (web processes and load generators) and writes only this section and"
        " `docs/benchmarks/scale-soak.png`; `make bench` keeps both.",
        "",
    ]
    if scale and "error" not in scale:
        c = scale["connect"]
        lines += [
            f"Load average before connecting: {', '.join(map(str, c.get('load_average_before', [])))};"
            f" after the run: {', '.join(map(str, meta.get('load_average_after', [])))}"
            " (1, 5, 15 min; above 2 the machine was shared with other work and the figures are a floor).",
            "",
        ]
    lines += ["| figure | measured | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(results)]
    lines += [""]
    if scale and "error" not in scale:
        f = scale["fixtures"]
        lines += [
            f"Users: {f['users']:,}, each signed in (a session of its own) with one socket, subscribed to one room"
            f" it is a member of; rooms: {', '.join(f'{n:,} of {s}' for s, n in f['room_sizes'].items())}. Each"
            " socket's home is one web process (round robin, as a load balancer spreads them), so a room's members"
            " are spread over the processes. Memory: the web processes' RSS growth over the sockets, read when"
            " they are idle. The trickle: that share of the users sends one message a minute, each a user picked"
            " at random among the subscribed; every member checks its room's acked seq range (lost, duplicated).",
            "",
        ]
        if scale.get("storm"):
            s = scale["storm"]
            lines += [
                f"The storm: {s['killed_processes']} of {scale['layout']['web_processes']} web processes (every"
                " other port) get SIGKILL in the trickle; each client whose socket is cut comes back as the browser"
                " does (the browser's backoff with jitter, the next server of its list, `subscribe` with `since` ="
                " the last seq it saw). The layout keeps the survivors under the open-files limit: a process"
                f" here cannot hold more than ~{scale['layout']['file_limit'] - 2_000:,} sockets, so no single process"
                f" holding 50,000 can be killed; after the storm each survivor held ~{thousands(s['per_survivor'])}."
                " Lost and duplicated count every seq of the window at every member, whichever connection brought"
                " it; the window's latencies include the replays a client got on coming back (its time away), so"
                " they are not the delivery latency.",
                "",
            ]
    soak = results.get("soak") or {}
    if soak and "error" not in soak:
        lines += [
            f"The soak: {soak['connected']:,} sockets on {soak['web_processes']} web processes for"
            f" {plan.get('soak_minutes')} min at {soak['rate']:g} sends/s, sampled every {plan.get('soak_sample')} s;"
            " then every client leaves and the run waits for the rooms' presence, the users' online sets, the"
            " group subscriptions in Redis (`PUBSUB NUMSUB`) and the web processes' connection and subscription"
            f" gauges to come back to zero ({'they did' if soak['leak']['clean'] else 'they did NOT'}, after"
            f" {soak['leak']['seconds']} s).",
            "",
        ]
    if plot is not None:
        lines += [f"![soak]({os.path.relpath(plot, docs.parent)})", ""]
    lines += [SECTION_END]
    return "\n".join(lines)


def kept_section(text: str) -> str:
    from bench.docs_sections import kept_between

    return kept_between(text, SECTION_START, SECTION_END)


def write_docs(path: Path, section: str) -> None:
    """Replace the scale section of the report, or add it after the search section (or the analysis)."""
    from bench.docs_sections import ANALYSIS_END, write_section
    from bench.search import SECTION_END as SEARCH_END

    write_section(path, section, start=SECTION_START, end=SECTION_END, after=(SEARCH_END, ANALYSIS_END))


def thousands(n: int | None) -> str:
    """``n`` with thousands separators, or "unknown" for None (a figure that could not be read)."""
    return "unknown" if n is None else f"{n:,}"
