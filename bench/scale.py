"""python -m bench.scale: connections at scale (``make bench-scale``): a benchmark, not a test.

Three runs, each on web processes it starts (``pubsub_site.cluster.Cluster``, the bench's
uvicorn command, on consecutive free ports) with one rq worker (persistence on), against a
database (``pubsub_bench_scale``, recreated) and a Redis database (10, flushed) of its own,
driven by load-generator processes (``bench.scaleload``: uvloop + picows, each from a
source address of its own, 127.0.0.2, .3, …):

- ``scale``  ``--sockets`` (default 100,000) signed-in users, one socket each, each
             subscribed to one room (rooms of 20, plus ``--big-rooms`` rooms of
             ``--big-room-size``): time to connect them all, web memory per socket (the web
             processes' RSS growth over the sockets), web CPU per handshake and per idle
             socket, then a trickle (``--trickle-share`` of the users, default 1%, sending
             one message a minute, for ``--trickle-seconds``): p99 send → receipt and lost;
             the load generators' own CPU beside every figure.
- ``storm``  on the same sockets: SIGKILL web processes holding ``--storm-sockets`` (default
             50,000) in all while the trickle goes on; every client comes back as the browser
             does (backoff with jitter, the next server of its list, resubscribe with
             ``since``): time until all are back, then lost/duplicated over the whole window.
             A process may open 20,000 files here, so the run starts enough web processes that
             the survivors can hold every socket (100,000: 14 processes of ~7,150, 7 killed).
- ``soak``   ``--soak-sockets`` (default 20,000) for ``--soak-minutes`` (default 30) at
             ``--soak-rate`` sends a second: web RSS and CPU, p99, lost and Redis memory
             every ``--soak-sample`` seconds (a plot); then everyone leaves and presence,
             the online sets, the group subscriptions in Redis and the web processes' gauges
             must all come back to zero (no leak).

``--server bare --sections scale`` runs the scale section with the bare ASGI reference
(``bench.bare``) in the site's place, on the same layout: the ceiling of the server the site
runs on, at this many sockets on this machine.

Prints a table and writes JSON (``bench/results/scale.json``) and, unless ``--no-docs``,
its section of docs/benchmarks.md (between the ``scale`` markers, which ``make bench``
keeps) and the soak plot (docs/benchmarks/scale-soak.png).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import fixtures
from bench.scale_cluster import redis_client
from bench.scale_plan import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, FILE_LIMIT, TARGETS, ScalePlan
from bench.scale_sections import run_scale, run_soak

ROOT = Path(__file__).resolve().parent.parent

# --- the whole run -----------------------------------------------------------------


def run(plan: ScalePlan) -> dict:
    from bench.loadgen import raise_open_files_limit

    limit = raise_open_files_limit()
    plan.log(f"database {fixtures.database_name(plan.database_url)} (recreated), redis {plan.redis_url} (flushed);"
             f" open files per process: {limit:,}")  # fmt: skip
    fixtures.recreate_database(plan.database_url)
    fixtures.setup_django(plan.database_url, plan.redis_url)
    redis_client(plan).flushdb()
    results: dict = {"open_files_limit": limit}
    started = time.monotonic()
    if "scale" in plan.sections or "storm" in plan.sections:
        try:
            results["scale"] = run_scale(plan, want_storm="storm" in plan.sections)
        except Exception as error:
            plan.log(f"  scale failed: {type(error).__name__}: {error}")
            results["scale"] = {"error": f"{type(error).__name__}: {error}"}
    if "soak" in plan.sections:
        try:
            results["soak"] = run_soak(plan)
        except Exception as error:
            plan.log(f"  soak failed: {type(error).__name__}: {error}")
            results["soak"] = {"error": f"{type(error).__name__}: {error}"}
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = ScalePlan()
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--sections", default="scale,storm,soak", help="comma-separated: scale, storm, soak")
    parser.add_argument("--sockets", type=int, default=d.sockets, help=f"sockets of scale and storm ({d.sockets:,})")
    parser.add_argument("--per-web", type=int, default=d.per_web, help=f"sockets a web process holds ({d.per_web:,})")
    parser.add_argument("--per-client", type=int, default=d.per_client,
                        help=f"sockets a load-generator process holds ({d.per_client:,})")  # fmt: skip
    parser.add_argument("--room-size", type=int, default=d.room_size)
    parser.add_argument("--big-rooms", type=int, default=d.big_rooms)
    parser.add_argument("--big-room-size", type=int, default=d.big_room_size)
    parser.add_argument("--connect-concurrency", type=int, default=d.connect_concurrency,
                        help="handshakes at once over every load generator")  # fmt: skip
    parser.add_argument("--trickle-share", type=float, default=d.trickle_share,
                        help="share of the users sending one message a minute (0.01)")  # fmt: skip
    parser.add_argument("--trickle-seconds", type=float, default=d.trickle_seconds)
    parser.add_argument("--idle-seconds", type=float, default=d.idle_seconds)
    parser.add_argument("--storm-sockets", type=int, default=d.storm_sockets,
                        help="sockets held by the web processes killed (50,000)")  # fmt: skip
    parser.add_argument("--storm-window", type=float, default=d.storm_window,
                        help="seconds of trickle the storm happens in (the kill after 5 s)")  # fmt: skip
    parser.add_argument("--storm-wait", type=float, default=d.storm_wait,
                        help="seconds after the kill to wait for every client to be back (180)")  # fmt: skip
    parser.add_argument("--soak-sockets", type=int, default=d.soak_sockets)
    parser.add_argument("--soak-minutes", type=float, default=d.soak_minutes)
    parser.add_argument("--soak-rate", type=float, default=d.soak_rate, help="sends a second during the soak")
    parser.add_argument("--soak-sample", type=float, default=d.soak_sample, help="seconds between samples")
    parser.add_argument("--leak-wait", type=float, default=d.leak_wait,
                        help="seconds to wait for the state to come back to zero after everyone left")  # fmt: skip
    parser.add_argument("--server", choices=("site", "bare"), default=d.server,
                        help="bare: the bare ASGI reference (bench.bare), the scale section only")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="py-spy on the web processes (connect, idle, trickle, the storm's survivors)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-docs", action="store_true", help="write neither docs/benchmarks.md nor the plot")
    parser.add_argument("--render", metavar="JSON", default=None, help="run nothing: write the docs from a run's JSON")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_SCALE_REDIS_URL", DEFAULT_REDIS_URL))
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> ScalePlan:
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    for name in sections:
        if name not in ("scale", "storm", "soak"):
            raise SystemExit(f"--sections {name}: unknown (known: scale, storm, soak)")
    if args.server == "bare" and sections != ["scale"]:
        raise SystemExit("--server bare runs the scale section only (the bare app has no gauges, presence or drain)")
    if args.per_web >= FILE_LIMIT or args.per_client >= FILE_LIMIT:
        raise SystemExit(f"--per-web and --per-client must stay under the {FILE_LIMIT:,} open files of a process")
    names = ("sockets", "per_web", "per_client", "room_size", "big_rooms", "big_room_size", "connect_concurrency",
             "trickle_share", "trickle_seconds", "idle_seconds", "storm_sockets", "storm_window", "storm_wait",
             "soak_sockets", "soak_minutes", "soak_rate", "soak_sample", "leak_wait", "profile", "server")  # fmt: skip
    plan = ScalePlan(database_url=args.database_url, redis_url=args.redis_url, sections=sections,
                     **{n: getattr(args, n) for n in names})  # fmt: skip
    plan.storm_window = max(plan.storm_window, plan.storm_kill_after + 5)
    if plan.storm_sockets > plan.sockets // 2:  # SCALE_SOCKETS lowered alone: the storm takes half
        half = plan.sockets // 2
        print(f"--storm-sockets {plan.storm_sockets:,} > half of {plan.sockets:,} sockets: {half:,} instead")
        plan.storm_sockets = half

    def log(line: str) -> None:
        print(line, flush=True)

    plan.log = log
    return plan


def main(argv: list[str] | None = None) -> int:
    from bench import scale_report, summary

    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
    else:
        plan = make_plan(args)
        command = "python -m bench.scale " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        results = run(plan)
        results["meta"] = {
            "command": command,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": summary.git_commit(),
            "machine": summary.machine(),
            "services": summary.service_versions(plan),
            "plan": {k: v for k, v in asdict(plan).items() if k != "log"},
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
            "targets": TARGETS,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nJSON: {out}")
    print()
    print(scale_report.text_table(results))
    if not args.no_docs:
        docs = Path(args.docs)
        plot = docs.parent / "benchmarks" / "scale-soak.png"
        has_plot = scale_report.plot_soak(results, plot)
        scale_report.write_docs(docs, scale_report.markdown(results, plot if has_plot else None, docs))
        print(f"Markdown: {docs}" + (f", plot: {plot}" if has_plot else ""))
    failed = [k for k in ("scale", "soak") if isinstance(results.get(k), dict) and "error" in results[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
