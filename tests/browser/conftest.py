"""Browser tests: Debian's Chromium, driven by Playwright's sync API (pytest-playwright's
`new_context` and `page` fixtures), against real web (uvicorn) and rq worker processes (the
`cluster` fixture) sharing the test database.

Playwright's sync API runs its event loop in the main thread and leaves it marked as
running between calls. So:
- the browser lives for this package only (`playwright` and `browser` are package
  fixtures here, not pytest-playwright's session ones): the async tests collected after
  it must find no running loop;
- while it lives, Django is told the main thread's sync ORM calls are fine (the test
  code is sync; the loop is Playwright's), and what needs asyncio of its own runs in a
  thread (`kit.off_loop`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from tests.browser.kit import Site

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Patient assertions: the suite shares the machine with real servers, and CI with more.
expect.set_options(timeout=10_000)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """Debian's Chromium (`playwright install` cannot download here), headless, with its
    background chatter switched off."""
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        # Not a skip: `make test` installs Chromium (scripts/test-deps.sh); a run without it
        # has not tested the pages.
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set CHROMIUM")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            yield pw
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(playwright: Playwright, browser_type_launch_args: dict) -> Iterator[Browser]:
    browser = playwright.chromium.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_context_args() -> dict:
    return {"locale": "en-GB", "timezone_id": "UTC", "device_scale_factor": 1}


@pytest.fixture(scope="package")
def collected_static() -> None:
    """The web processes run with DEBUG off, as in production, and so serve static files
    from STATIC_ROOT only: collect them first."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        check=True,
    )


@pytest.fixture
def site(collected_static, cluster, new_context, request) -> Iterator[Site]:
    """One web process and one worker; every page opened through it is watched for CSP
    violations and uncaught script errors, which fail the test."""
    running = Site(cluster=cluster, port=cluster.start_web(), new_context=new_context)
    cluster.start_worker()
    yield running
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print("--- WebSocket traffic\n" + "\n".join(running.traffic[-300:]))
    assert not running.problems, "\n".join(running.problems)


@pytest.fixture
def lobby(public_room, bob):
    """The public room, with bob in it."""
    from rooms.services import room_join

    room_join(room=public_room, user=bob)
    return public_room
