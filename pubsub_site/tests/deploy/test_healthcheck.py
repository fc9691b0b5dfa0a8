"""deploy/healthcheck.py, the health check the containers run, exercised for real: against
a local HTTP server standing in for web, and against Redis for the rq worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pubsub_site.tests.deploy.files import ROOT


def run_healthcheck(kind: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"ALLOWED_HOSTS", "PORT"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "healthcheck.py"), kind],
        env=clean,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def fake_web():
    """An HTTP server standing in for the web server: records each request, answers with `status`."""
    seen: list[tuple[str, str]] = []
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers["Host"]))
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen, state
    server.shutdown()
    server.server_close()


def test_the_web_healthcheck_asks_healthz_with_a_host_django_allows(fake_web):
    port, seen, state = fake_web
    result = run_healthcheck("web", PORT=str(port), ALLOWED_HOSTS=".example.com, chat.example.org")
    assert result.returncode == 0, result.stderr
    assert seen == [("/healthz", "example.com")]

    state["status"] = 400  # what Django answers to a Host it does not allow
    assert run_healthcheck("web", PORT=str(port), ALLOWED_HOSTS="chat.example.com").returncode == 1
    assert seen[-1] == ("/healthz", "chat.example.com")


def test_the_web_healthcheck_fails_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    result = run_healthcheck("web", PORT=str(free_port), ALLOWED_HOSTS="chat.example.com")
    assert result.returncode == 1
    assert "web unhealthy" in result.stderr


def test_the_worker_healthcheck_needs_a_live_rq_worker_on_this_host(settings):
    import redis
    from rq import Worker

    connection = redis.Redis.from_url(settings.REDIS_URL)
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1

    elsewhere = Worker(["default"], connection=connection)
    elsewhere.hostname = "another-container"
    elsewhere.register_birth()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1

    here = Worker(["default"], connection=connection)
    here.register_birth()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 0

    here.register_death()
    elsewhere.register_death()
    assert run_healthcheck("worker", REDIS_URL=settings.REDIS_URL).returncode == 1


def test_the_worker_healthcheck_fails_when_redis_does_not_answer():
    result = run_healthcheck("worker", REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert result.returncode == 1
    assert "worker unhealthy" in result.stderr
