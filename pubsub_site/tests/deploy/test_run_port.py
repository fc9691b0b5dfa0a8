"""`make run PORT=…` (and `make demo`) serve on the port asked for (issue 21); a port that is
no number is refused with a sentence saying so, before anything starts."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def make_dry_run(*args: str) -> str:
    """What make would run (-n: nothing is run), with VENV pointing at the tests' own."""
    result = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout


def test_make_run_and_demo_hand_the_port_to_the_start_script():
    assert "PORT=8123 scripts/run.sh" in make_dry_run("run", "PORT=8123").splitlines()
    assert "DEMO=1 PORT=8123 scripts/run.sh" in make_dry_run("demo", "PORT=8123").splitlines()
    assert "PORT=8000 scripts/run.sh" in make_dry_run("run").splitlines()


def test_the_start_script_serves_on_the_port_it_is_given():
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert "PORT=${PORT:-8000}" in script
    assert 'honcho" -f Procfile start -p "$PORT"' in script
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "--port $PORT" in web


def test_the_start_script_refuses_a_port_that_is_no_port():
    for bad in ("abc", "0", "70000", "80; rm -rf /"):
        result = subprocess.run(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env={**os.environ, "PORT": bad, "VENV": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, (bad, result.stderr)
        assert "is not a port number: pick one from 1 to 65535, e.g. make run PORT=8080" in result.stderr
