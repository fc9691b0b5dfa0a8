"""`make bench-scale` runs end to end in a tiny configuration: every socket in, the storm's
clients all back on the surviving processes, nothing lost, and no state left after the soak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale_plan import web_layout
from tests.bench.test_bench import bench_database_url, free_redis_database, redis_url

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]


def test_the_storm_layout_leaves_survivors_that_hold_every_socket_under_the_file_limit():
    assert web_layout(100_000, 16_000, 50_000) == (14, 7)  # 7 survivors of ~14,300 each
    assert web_layout(100_000, 16_000, 0) == (7, 0)
    webs, killed = web_layout(60, 40, 20)
    assert 60 / (webs - killed) <= 40 and 60 * killed / webs >= 20


def test_a_tiny_scale_run_connects_everyone_survives_the_storm_and_leaks_nothing(tmp_path):
    with free_redis_database() as db:
        out = tmp_path / "scale.json"
        command = [
            sys.executable, "-m", "bench.scale", "--no-docs", "--out", str(out),
            "--sockets", "60", "--per-web", "40", "--per-client", "30", "--room-size", "10",
            "--big-rooms", "1", "--big-room-size", "20", "--trickle-share", "1", "--trickle-seconds", "3",
            "--idle-seconds", "1", "--storm-sockets", "20", "--storm-window", "8",
            "--soak-sockets", "20", "--soak-minutes", "0.1", "--soak-rate", "5", "--soak-sample", "3",
            "--leak-wait", "40",
            "--database-url", bench_database_url(f"scale{db}"), "--redis-url", redis_url(db),
        ]  # fmt: skip
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    shown = finished.stdout[-4000:] + finished.stderr[-3000:]
    assert finished.returncode == 0, shown
    results = json.loads(out.read_text())
    scale, soak = results["scale"], results["soak"]
    assert scale["layout"]["web_processes"] == 3 and scale["layout"]["load_generators"] == 2, shown
    assert scale["connect"]["connected"] == scale["connect"]["asked"] == 60, shown
    assert scale["memory"]["gauges"]["pubsub_ws_connections"] == 60, shown
    assert scale["memory"]["kib_per_socket"] is not None, shown
    trickle = scale["trickle"]
    assert trickle["sent"] == trickle["acked"] > 0, shown
    assert (trickle["lost"], trickle["duplicated"], trickle["closed_members"]) == (0, 0, 0), shown
    assert trickle["p50_ms"] <= trickle["p99_ms"], shown
    assert trickle["cores"]["clients"] >= 0 and "clients" in trickle["cpu_s"], shown

    storm = scale["storm"]
    assert storm["killed_processes"] == 1 and storm["sockets_dropped"] == 20, shown
    assert storm["back"] == 20 and storm["still_out"] == 0 and storm["failed"] == 0, shown
    assert storm["open_after"] == storm["members"] == 60, shown
    assert storm["survivor_connections_gauge"] == 60, shown  # all on the two processes left
    window = storm["window"]
    assert window["acked"] > 0 and (window["lost"], window["duplicated"]) == (0, 0), shown

    assert soak["connected"] == 20 and soak["samples"], shown
    assert soak["summary"]["lost"] == 0, shown
    assert soak["leak"]["clean"], soak["leak"]
    assert "time to connect all" in finished.stdout and "after everyone left" in finished.stdout


def test_the_bare_reference_connects_and_trickles_on_the_same_layout(tmp_path):
    """`--server bare`: the bare ASGI app (bench.bare) in the site's place, the ceiling of the
    server the site runs on; it has no gauges, so the section reports none."""
    with free_redis_database() as db:
        out = tmp_path / "scale.json"
        command = [
            sys.executable, "-m", "bench.scale", "--no-docs", "--out", str(out), "--server", "bare",
            "--sections", "scale", "--sockets", "60", "--per-web", "40", "--per-client", "30",
            "--room-size", "10", "--big-rooms", "1", "--big-room-size", "20", "--trickle-share", "1",
            "--trickle-seconds", "3", "--idle-seconds", "1",
            "--database-url", bench_database_url(f"scale{db}"), "--redis-url", redis_url(db),
        ]  # fmt: skip
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    shown = finished.stdout[-4000:] + finished.stderr[-3000:]
    assert finished.returncode == 0, shown
    scale = json.loads(out.read_text())["scale"]
    assert scale["connect"]["connected"] == scale["connect"]["asked"] == 60, shown
    assert scale["memory"]["gauges"] is None and scale["memory"]["kib_per_socket"] is not None, shown
    trickle = scale["trickle"]
    assert trickle["sent"] == trickle["acked"] > 0 and (trickle["lost"], trickle["duplicated"]) == (0, 0), shown


def test_the_bare_reference_is_refused_the_sections_only_the_site_has():
    finished = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--server", "bare", "--sections", "scale,storm", "--no-docs"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode != 0 and "--server bare runs the scale section only" in finished.stderr
