"""What every part of the container tests uses: the repository's root, the timings printed at
the end of the run, waiting for a condition, free ports, and the tools they need (the docker
client, docker-compose, openssl...), failing with what to install when one is missing."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# What took how long, printed at the end of the run (tests/container/conftest.py).
TIMINGS: list[tuple[str, float]] = []


class timed:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> timed:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS.append((self.what, time.monotonic() - self.started))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """``predicate()``'s first true value, asked every ``interval`` s; the test fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(interval)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def docker_cli() -> str:
    """The client of the engine that is started (Debian's docker.io), else any on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("the docker client is missing: apt-get install docker.io (scripts/test-deps.sh installs it)")


def required_tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install {package} (scripts/test-deps.sh installs it)")
    return found
