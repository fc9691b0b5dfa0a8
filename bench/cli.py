"""python -m bench [--quick] [--only SECTIONS] [--configs KEYS] [--duration S] [--out FILE] [--docs FILE]

Starts the servers it measures on 127.0.0.1 (pubsub_site.cluster.Cluster: web
processes and one rq worker) against its own PostgreSQL database (recreated) and
Redis database (flushed), drives them with uvloop + picows client processes
speaking the wire contract as signed-in users, and prints the figures. Writes
them as JSON (--out) and, for a full run, as docs/benchmarks.md with a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from bench import report
from bench.runner import SECTIONS, Plan, ServerConfig

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pubsub_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"

ALL = ["latency", "fanout", "persistence", "memory", "profile"]
# The full run (about 15 minutes on 2 cores): the production shape (daphne + core, what the
# Procfile runs) gets every section; the other server x channel layer pairs the two load
# ladders; then two web processes, and "what-if" variants of the consumer (bench/whatif.py).
# Opening connections is slow (~15-20 a second per web process), so 5,000 idle connections
# are measured once, and the comparison of servers' memory uses 1,000.
FULL_MATRIX: list[tuple[ServerConfig, list[str]]] = [
    (ServerConfig("daphne", "core"), ["latency", "fanout", "persistence", "profile", "memory"]),
    (ServerConfig("daphne", "pubsub"), ["latency"]),
    (ServerConfig("uvicorn", "core"), ["latency"]),
    (ServerConfig("uvicorn", "pubsub"), ["latency", "memory@1000"]),
    (ServerConfig("daphne", "core", webs=2), ["latency"]),
    (ServerConfig("daphne", "core", variant="fastdispatch"), ["latency"]),
    (ServerConfig("uvicorn", "pubsub", variant="fastdispatch"), ["latency", "fanout", "persistence", "profile"]),
]
QUICK_MATRIX: list[tuple[ServerConfig, list[str]]] = [
    (ServerConfig("daphne", "core"), ["latency", "fanout", "persistence", "memory"]),
]
KNOWN = {c.key: c for c, _ in FULL_MATRIX} | {
    ServerConfig(s, layer, webs, variant).key: ServerConfig(s, layer, webs, variant)
    for s in ("daphne", "uvicorn")
    for layer in ("core", "pubsub")
    for webs in (1, 2)
    for variant in ("", "fastdispatch")
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny configuration: seconds per step, few clients")
    parser.add_argument("--only", default="", help=f"comma-separated sections to run: {', '.join(ALL)}")
    parser.add_argument("--configs", default="", help=f"comma-separated configurations: {', '.join(sorted(KNOWN))}")
    parser.add_argument("--duration", type=float, default=None, help="seconds of sending per step (default 5; 2 quick)")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--memory-connections", type=int, default=None, help="idle connections (default 5000)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait for other work on the machine to calm down before each section "
                        "(default 20; 3 quick)")  # fmt: skip
    parser.add_argument("--profile-rate", type=int, default=None, help="delivered/s while profiling (default 1000)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"), help="the JSON file")
    parser.add_argument("--docs", default=None, help="write the Markdown report here (default: docs/benchmarks.md "
                        "for a full run, nothing with --quick or --only)")  # fmt: skip
    parser.add_argument("--no-docs", action="store_true", help="write no Markdown report")
    parser.add_argument("--render", metavar="JSON", default=None,
                        help="run nothing: rewrite docs/benchmarks.md and the plot from a run's JSON")  # fmt: skip
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for name in only:
        if name not in SECTIONS:
            raise SystemExit(f"--only {name}: unknown section (known: {', '.join(ALL)})")
    matrix = QUICK_MATRIX if args.quick else FULL_MATRIX
    if args.configs:
        keys = [k.strip() for k in args.configs.split(",") if k.strip()]
        unknown = [k for k in keys if k not in KNOWN]
        if unknown:
            raise SystemExit(f"--configs: unknown {unknown} (known: {', '.join(sorted(KNOWN))})")
        default_sections = QUICK_MATRIX[0][1] if args.quick else ALL
        matrix = [(KNOWN[k], dict((c.key, s) for c, s in matrix).get(k, default_sections)) for k in keys]
    if only:
        matrix = [(config, [s for s in sections if s.partition("@")[0] in only]) for config, sections in matrix]
        if args.configs:  # sections a config does not run by default, but were asked for
            matrix = [(c, s or [x for x in ALL if x in only]) for c, s in matrix]
    matrix = [(c, s) for c, s in matrix if s]
    plan = Plan(database_url=args.database_url, redis_url=args.redis_url, configs=matrix, clients=args.clients)
    if args.quick:
        plan.duration = 2.0
        plan.drain_timeout = 10.0
        plan.latency_shape = (2, 5)
        plan.latency_ladder = plan.fixed_rates = [200, 500]
        plan.fanout_shape = (1, 20)
        plan.fanout_ladder = [200, 400]
        plan.persistence_rate = 100
        plan.persistence_shape = (2, 2)
        plan.memory_connections = 60
        plan.memory_room_size = 10
        plan.memory_warmup = 20
        plan.profile_rate = 500
        plan.profile_seconds = 3
        plan.quiet_wait = 3
    if args.duration is not None:
        plan.duration = args.duration
    if args.profile_rate is not None:
        plan.profile_rate = args.profile_rate
    if args.quiet_wait is not None:
        plan.quiet_wait = args.quiet_wait
    if args.memory_connections is not None:
        plan.memory_connections = args.memory_connections

    def log(line: str) -> None:
        print(line, flush=True)

    plan.log = log
    return plan


def write_docs(results: dict, docs: str) -> None:
    plot = Path(docs).parent / "benchmarks" / "latency.png"
    report.plot_latency(results, plot)
    Path(docs).write_text(report.markdown(results, plot_path=plot, docs_path=Path(docs)))
    print(f"Markdown: {docs}, plot: {plot}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        results["summary"] = report.summarise(results)
        results["targets"] = report.targets(results)
        print(report.text_table(results))
        write_docs(results, args.docs or str(ROOT / "docs" / "benchmarks.md"))
        return 0
    plan = make_plan(args)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    started = time.time()
    results = report.run_and_describe(plan, command=command, quick=args.quick)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(report.text_table(results))
    print(f"\nJSON: {out}  ({time.time() - started:.0f} s in all)")
    docs = args.docs
    if docs is None and not (args.quick or args.only or args.configs):
        docs = str(ROOT / "docs" / "benchmarks.md")
    if docs and not args.no_docs:
        write_docs(results, docs)
    return 0
