"""The benchmark runs end to end in a tiny configuration and counts every message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from django.conf import settings
from django.db import connection

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]


def bench_database_url(suffix: str) -> str:
    """The server the tests use, with a throwaway database of the benchmark's own (never the tests' or dev one)."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/pubsub_bench_test_{suffix}"


def redis_url(db: int) -> str:
    return urlunsplit(urlsplit(settings.REDIS_URL)._replace(path=f"/{db}"))


@contextmanager
def free_redis_database():
    """A Redis database no other run of this test is using (the tests use 9, their SQLite leg 8, the benchmark 11).

    Two benchmarks on one Redis database would share rooms' state and the job queue, so
    each run claims one of two databases with a lock kept in a third (12), never flushed.
    """
    locks = redis.Redis.from_url(redis_url(12))
    for db in (14, 15):
        key = f"pubsub:bench-test:lock:{db}"
        if locks.set(key, os.getpid(), nx=True, ex=600):
            try:
                yield db
            finally:
                locks.delete(key)
            return
    pytest.skip("Redis databases 14 and 15 are both taken by other runs of this test")


def test_it_measures_a_tiny_run_and_loses_nothing(tmp_path):
    with free_redis_database() as db:
        run_tiny_benchmark(tmp_path, db)


SITE = "uvicorn-1p"
BARE = "bare-1p"
SITE_SECTIONS = ("latency", "fanout", "spectators", "handshake", "storm", "persistence", "memory", "api")


def run_tiny_benchmark(tmp_path, db: int) -> None:
    out = tmp_path / "bench.json"
    # --quick runs the site on uvicorn through every section but the profile, and the bare
    # reference app through the load ladders and the handshakes.
    command = [
        sys.executable, "-m", "bench", "--quick", "--quiet-wait", "0",
        "--out", str(out), "--no-docs",
        "--database-url", bench_database_url(str(db)), "--redis-url", redis_url(db),
    ]  # fmt: skip
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    results = json.loads(out.read_text())
    assert {"meta", "configs", "summary", "targets", "seconds"} <= results.keys()
    assert {"machine", "command", "plan", "services"} <= results["meta"].keys()
    assert {SITE, BARE} <= results["configs"].keys()
    site, bare = results["configs"][SITE], results["configs"][BARE]
    assert set(SITE_SECTIONS) <= site.keys()
    assert {"latency", "fanout", "handshake"} <= bare.keys()
    assert bare["reference"] and not site["reference"]
    for config in (site, bare):
        failed = {
            name: section["error"]
            for name, section in config.items()
            if isinstance(section, dict) and "error" in section
        }
        assert not failed, f"{failed}\n{finished.stdout[-4000:]}"

    steps = []
    for config in (site, bare):
        for name in ("latency", "fanout"):
            assert config[name]["connect"]["failed"] == 0, config[name]["connect"]
            # A step after one with p99 > 2 s is skipped as saturated (a busy machine); the first of each runs.
            assert "skipped" not in config[name]["steps"][0]
            steps += config[name]["steps"]
    steps += site["spectators"]["steps"] + [site["persistence"]["delivery"], site["storm"]["check"]]
    steps = [step for step in steps if "skipped" not in step]
    for step in steps:
        shown = json.dumps({k: v for k, v in step.items() if not k.startswith("_")}) + finished.stdout[-2500:]
        assert step["sent"] == step["acked"], shown
        assert step["delivered"] == step["acked"] * step["members_per_room"], shown
        assert (step["lost"], step["duplicated"], step["out_of_order"], step["closed_members"]) == (0, 0, 0, 0), shown
        assert step["p50_ms"] is not None and step["p50_ms"] <= step["p99_ms"] <= step["max_ms"], shown
        assert step["web_us_per_copy"] is not None and step["web_us_per_copy"] > 0, shown

    spectators = site["spectators"]
    assert spectators["connect"]["connections"] == spectators["connect"]["asked"] > spectators["members"]
    assert spectators["cut_off"] == 0
    for config in (site, bare):
        handshake = config["handshake"]
        assert handshake["connections"] == handshake["asked"] == results["meta"]["plan"]["handshake_clients"]
        assert handshake["per_s_per_web_process"] > 0
    storm = site["storm"]
    assert storm["connections"] == storm["asked"] == storm["before"]["connections"], storm
    assert storm["failed"] == 0 and storm["seconds"] > 0
    assert site["persistence"]["not_persisted_within_30s"] == 0
    assert site["persistence"]["lag_p99_ms"] is not None
    assert site["memory"]["failed"] == 0
    api = site["api"]  # publishes over the HTTP API beside the socket (bench/http_api.py)
    for path in ("http", "socket"):
        figures = api[path]
        assert figures["acked"] > 0 and figures["failures"] == {}, api
        assert (figures["missing_seqs"], figures["duplicated"]) == (0, 0), api
        assert figures["p50_ms"] <= figures["p99_ms"], api
    assert api["not_persisted_within_30s"] == 0, api
    assert site["memory"]["kib_per_connection"] is not None

    summary = results["summary"][SITE]
    assert {
        "fixed",
        "capacity_10x20",
        "us_per_copy_10x20",
        "capacity_1x1000",
        "capacity_spectators",
        "handshake",
        "storm",
        "kib_per_connection",
        "persistence_lag_p99_ms",
        "vs_reference",
    } <= summary.keys()
    assert (summary["lost"], summary["duplicated"], summary["out_of_order"]) == (0, 0, 0)
    assert {"cpu_per_copy", "handshake", "storm", "spectators"} <= results["targets"][SITE].keys()
    assert "site on uvicorn" in finished.stdout and "bare ASGI reference" in finished.stdout  # the table


def test_the_bare_reference_is_never_asked_what_only_the_site_does():
    from bench.cli import make_plan, parse_args

    plan = make_plan(parse_args(["--only", "latency,api,persistence", "--configs", "uvicorn-1p,bare-1p"]))
    assert [(config.key, sections) for config, sections in plan.configs] == [
        ("uvicorn-1p", ["latency", "persistence", "api"]),
        ("bare-1p", ["latency"]),
    ]
