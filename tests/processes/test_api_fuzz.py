"""A schema-driven fuzz run (Schemathesis) over the HTTP API of a live web process: no 500."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from api.services import bot_create, token_create, webhook_create

pytestmark = pytest.mark.processes


def test_a_schemathesis_run_over_the_api_finds_no_server_error(cluster, alice, public_room, tmp_path):
    cluster.env["API_RATE_LIMIT"] = "100000/minute"  # a 429 would hide what it refused
    port = cluster.start_web()
    cluster.start_worker()
    token = token_create(user=alice, name="fuzz").secret
    webhook_create(bot=bot_create(room=public_room, created_by=alice, username="fuzzbot"), created_by=alice, name="x")
    command = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert command, "schemathesis is in requirements-dev.txt"
    run = subprocess.run(
        [
            command,
            "run",
            f"http://127.0.0.1:{port}/api/v1/schema",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "25",
            "--seed",
            "25",
            "--max-time",
            "75",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the checkout
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(run.stdout[-3000:])
    failures = run.stdout.find("FAILURES")
    assert run.returncode == 0, run.stdout[max(0, failures) :][:8000] + run.stderr[-2000:]
    assert "API operations" in run.stdout or "operations" in run.stdout
