"""The layers of pyproject.toml's import-linter contracts hold, and a violation breaks them.

``make test`` runs ``lint-imports`` after ruff; this test runs it too, on a copy of the
project's packages, once as they are (every contract kept) and once with a module that
breaks each contract (the store importing the sockets, rooms' domain importing messaging,
the protocol importing an app): ``lint-imports`` must fail and name each broken contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every package the contracts look at (a new app added there is copied too).
PACKAGES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"])
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_of_the_project(destination: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            destination / package,
            ignore=shutil.ignore_patterns("__pycache__", "migrations", "*.html", "*.txt", "*.json", "static"),
        )
    # Only the import-linter configuration: the rest of pyproject.toml is not needed.
    config = (ROOT / "pyproject.toml").read_text()
    (destination / "pyproject.toml").write_text(config[config.index("[tool.importlinter]") :])
    return destination


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_of_the_project(tmp_path_factory.mktemp("project"))


def test_the_projects_imports_keep_every_contract(project):
    result = lint_imports(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_module_that_crosses_the_layers_breaks_the_contracts(project):
    (project / "messaging/store/probe.py").write_text("from messaging.realtime import consumers\n")
    (project / "rooms/selectors.py").write_text(
        (project / "rooms/selectors.py").read_text() + "\nfrom messaging import services  # noqa\n"
    )
    (project / "protocol/probe.py").write_text("from messaging import models\n")
    try:
        result = lint_imports(project)
    finally:
        (project / "messaging/store/probe.py").unlink()
        (project / "protocol/probe.py").unlink()
        shutil.copy(ROOT / "rooms/selectors.py", project / "rooms/selectors.py")
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "messaging.store is not allowed to import messaging.realtime" in out
    assert "Illegal imports of protected package messaging.realtime" in out
    assert "messaging.store.probe -> messaging.realtime.consumers (l.1)" in out
    assert "rooms.selectors is not allowed to import messaging" in out
    assert "protocol is not allowed to import messaging" in out
    assert "protocol.probe -> messaging.models (l.1)" in out
    assert "4 broken" in out
