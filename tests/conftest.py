"""Fixtures for tests that run real processes (uvicorn, rq workers) on 127.0.0.1."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from conftest import GENEROUS_WS_LIMITS
from pubsub_site.cluster import Cluster


def database_url() -> str:
    """The test database as the processes' DATABASE_URL: PostgreSQL's, or SQLite's file
    (a file-backed test database: settings give SQLite one, so that processes share it)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def cluster(transactional_db, request, tmp_path):
    """Real processes sharing the test database and the test Redis (and a directory of the
    test's own for attachments)."""
    env = {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "ROOM_REDIS_URLS": ",".join(settings.ROOM_REDIS_URLS),
        "CHANNEL_REDIS_URLS": ",".join(settings.CHANNEL_REDIS_URLS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "ATTACHMENT_ROOT": str(tmp_path / "attachments"),
        **{f"WS_RATE_LIMIT_{action.upper()}": rate for action, rate in GENEROUS_WS_LIMITS.items()},
    }
    with Cluster(env=env) as running:
        yield running
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(running.logs())


def pytest_terminal_summary(terminalreporter):
    """The fault tests' table (tests.faults.kit.chaos.chaos_row), and with CHAOS_REPORT set (what
    `make chaos` does), the same table written into that file."""
    from tests.faults.kit import CHAOS_ROWS, chaos_table, write_reliability_table

    if not CHAOS_ROWS:
        return
    terminalreporter.section("faults: acked, stored in PostgreSQL, delivered to clients, lost, duplicated")
    terminalreporter.write_line(chaos_table(CHAOS_ROWS))
    if target := os.environ.get("CHAOS_REPORT"):
        stats = terminalreporter.stats
        failed = len(stats.get("failed", [])) + len(stats.get("error", []))
        write_reliability_table(Path(target), CHAOS_ROWS, passed=len(stats.get("passed", [])), failed=failed)
        terminalreporter.write_line(f"table written to {target}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def wait_until(predicate, timeout: float = 20, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        time.sleep(interval)
