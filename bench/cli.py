"""python -m bench [--quick] [--only SECTIONS] [--configs KEYS] [--duration S] [--out FILE] [--docs FILE]

Starts the servers it measures on 127.0.0.1 (pubsub_site.cluster.Cluster: web
processes and one rq worker) against its own PostgreSQL database (recreated) and
Redis database (flushed), drives them with uvloop + picows client processes
speaking the wire contract as signed-in users, and prints the figures. Writes
them as JSON (--out) and, for a full run, as docs/benchmarks.md with a plot.

Configurations (--configs; "-2p": two web processes): uvicorn-1p (the site on uvicorn,
websockets-sansio), daphne-1p, uvicorn-websockets-1p, granian-1p, bare-1p (bench/bare.py:
the bare-ASGI reference on the same uvicorn, the ceiling of the server), uvicorn-1p-replica
(uvicorn-1p with a replica of the benchmark's Redis started for it, and every ack waiting
for that replica: REDIS_WAIT_REPLICAS=1). Sections (--only):
latency, fanout, spectators, handshake, storm, persistence, memory, profile (bench/runner.py),
api (bench/http_api.py: publishes per second over the HTTP API beside the socket).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from bench import report, summary
from bench.plan import SERVERS, Plan, ServerConfig
from bench.sections import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pubsub_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"

ALL = ["latency", "fanout", "spectators", "handshake", "storm", "persistence", "memory", "profile", "api"]
# Sections that measure what only the site does (its API, its persistence).
SITE_ONLY = frozenset({"api", "persistence"})
SITE_SECTIONS = ["latency", "fanout", "spectators", "handshake", "storm", "persistence", "memory", "profile", "api"]
# The full run (about 40 minutes on 2 cores, more while opening connections is slow):
# the site on the server it ships with (uvicorn, websockets-sansio) gets every section;
# the bare reference app on the same server the scenarios that measure the server (its
# ceiling); the site on daphne, on uvicorn's websockets implementation and on granian the
# two load ladders (and the handshakes, and memory for daphne); two uvicorn processes the
# ladders; the site with every ack waiting for a Redis replica (WAIT) the 10 x 20 ladder and
# the persistence lag, beside the same without. Sections run one after the other, each on
# freshly started servers.
FULL_MATRIX: list[tuple[ServerConfig, list[str]]] = [
    (ServerConfig("uvicorn"), SITE_SECTIONS),
    (ServerConfig("bare"), ["latency", "fanout", "spectators", "handshake", "storm", "memory"]),
    (ServerConfig("daphne"), ["latency", "fanout", "handshake", "memory@1000"]),
    (ServerConfig("uvicorn", webs=2), ["latency", "fanout"]),
    (ServerConfig("uvicorn-websockets"), ["latency", "fanout"]),
    (ServerConfig("granian"), ["latency", "fanout", "handshake"]),
    (ServerConfig("uvicorn", replica=True), ["latency", "persistence"]),
]
QUICK_MATRIX: list[tuple[ServerConfig, list[str]]] = [
    (
        ServerConfig("uvicorn"),
        ["latency", "fanout", "spectators", "handshake", "storm", "persistence", "memory", "api"],
    ),
    (ServerConfig("bare"), ["latency", "fanout", "handshake"]),
]
KNOWN = {ServerConfig(server, webs).key: ServerConfig(server, webs) for server in SERVERS for webs in (1, 2)}
# The site with an ack that waits for a replica of the benchmark's Redis (REDIS_WAIT_REPLICAS=1).
KNOWN.update({c.key: c for c in (ServerConfig("uvicorn", 1, replica=True), ServerConfig("uvicorn", 2, replica=True))})


def config_for(key: str) -> ServerConfig:
    """A --configs key; the keys of earlier runs (``uvicorn-pubsub-1p``) name the same configuration."""
    if key in KNOWN:
        return KNOWN[key]
    server, _, rest = key.rpartition("-")
    if server.endswith("-pubsub") and f"{server.removesuffix('-pubsub')}-{rest}" in KNOWN:
        return KNOWN[f"{server.removesuffix('-pubsub')}-{rest}"]
    if server.endswith("-core"):
        raise SystemExit(f"--configs {key}: CHANNEL_LAYER=core is gone; the configurations differ by server now")
    raise SystemExit(f"--configs: unknown {key!r} (known: {', '.join(KNOWN)})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny configuration: seconds per step, few clients")
    parser.add_argument("--only", default="", help=f"comma-separated sections to run: {', '.join(ALL)}")
    parser.add_argument("--configs", default="", help=f"comma-separated configurations: {', '.join(KNOWN)}")
    parser.add_argument("--duration", type=float, default=None, help="seconds of sending per step (default 5; 2 quick)")
    parser.add_argument("--clients", type=int, default=None,
                        help="load-generator processes (default 2: one cannot take 30,000+ receipts a second"
                        " beside the server on 2 cores; 1 with --quick)")  # fmt: skip
    parser.add_argument("--memory-connections", type=int, default=None, help="idle connections (default 5000)")
    parser.add_argument("--spectators", type=int, default=None, help="spectators in the fan-out room (default 5000)")
    parser.add_argument("--handshake-clients", type=int, default=None, help="clients of `handshake` (default 1000)")
    parser.add_argument("--profile-handshake", action="store_true",
                        help="py-spy on the web processes during each phase of `handshake` (cold, warm): where a"
                        " handshake's CPU goes, in the log and the JSON (the phases' CPU figures then include"
                        " py-spy's reads)")  # fmt: skip
    parser.add_argument("--storm-clients", type=int, default=None, help="clients of `storm` (default 2000)")
    parser.add_argument("--connect-budget", type=float, default=None,
                        help="seconds to open a section's connections; the rest are skipped (default 300)")  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait for other work on the machine to calm down before each section "
                        "(default 20; 3 quick)")  # fmt: skip
    parser.add_argument("--profile-rate", type=int, default=None, help="delivered/s while profiling (default 10000)")
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
        chosen = [config_for(k) for k in keys]
        default_sections = QUICK_MATRIX[0][1] if args.quick else ALL
        matrix = [(c, dict((m.key, s) for m, s in matrix).get(c.key, default_sections)) for c in chosen]
    if only:
        matrix = [(config, [s for s in sections if s.partition("@")[0] in only]) for config, sections in matrix]
        if args.configs:  # sections a config does not run by default, but were asked for
            matrix = [(c, s + [x for x in ALL if x in only and x not in {y.partition("@")[0] for y in s}])
                      for c, s in matrix]  # fmt: skip
    # The bare reference app has no API and stores nothing: what only the site does is not asked of it.
    matrix = [(c, [x for x in s if not (c.is_reference and x.partition("@")[0] in SITE_ONLY)]) for c, s in matrix]
    matrix = [(c, s) for c, s in matrix if s]
    plan = Plan(database_url=args.database_url, redis_url=args.redis_url, configs=matrix)
    if args.quick:
        plan.clients = 1
        plan.duration = 2.0
        plan.drain_timeout = 10.0
        plan.latency_shape = (2, 5)
        plan.latency_ladder = plan.fixed_rates = [200, 500]
        plan.fanout_shape = (1, 20)
        plan.fanout_users = 5
        plan.fanout_ladder = [200, 400]
        plan.spectators = 40
        plan.spectator_users = 5
        plan.spectators_ladder = [600]
        plan.handshake_clients = 60
        plan.handshake_room_size = 10
        plan.storm_clients = 60
        plan.storm_room_size = 10
        plan.storm_check_rate = 300
        plan.persistence_rate = 100
        plan.persistence_shape = (2, 2)
        plan.api_connections = 2
        plan.memory_connections = 60
        plan.memory_room_size = 10
        plan.memory_warmup = 20
        plan.connect_budget = 60
        plan.profile_rate = 500
        plan.profile_seconds = 3
        plan.quiet_wait = 3
    for name in ("clients", "duration", "profile_rate", "quiet_wait", "memory_connections", "spectators",
                 "handshake_clients", "storm_clients", "connect_budget"):  # fmt: skip
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))

    def log(line: str) -> None:
        print(line, flush=True)

    plan.profile_handshake = args.profile_handshake
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
        results["summary"] = summary.summarise(results)
        results["targets"] = summary.targets(results)
        print(report.text_table(results))
        write_docs(results, args.docs or str(ROOT / "docs" / "benchmarks.md"))
        return 0
    plan = make_plan(args)
    command = "python -m bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    started = time.time()
    results = summary.run_and_describe(plan, command=command, quick=args.quick)
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
