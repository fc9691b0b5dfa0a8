"""The suite reaches every test the project holds: a plain ``pytest`` (``make test``, CI)
collects from the ``testpaths`` of pyproject.toml, and a package's tests outside them never ran
(api, attachments, outgoing_webhooks and webpush did not, until 2026-12-07)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", "node_modules", ".git"}


def test_every_folder_of_tests_is_under_the_suites_testpaths():
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    roots = [ROOT / path for path in testpaths]
    test_files = [
        path
        for path in ROOT.rglob("test_*.py")
        if not SKIP.intersection(path.relative_to(ROOT).parts) and not path.relative_to(ROOT).parts[0].startswith(".")
    ]
    assert test_files
    outside = sorted(
        str(path.relative_to(ROOT)) for path in test_files if not any(path.is_relative_to(root) for root in roots)
    )
    assert outside == []
