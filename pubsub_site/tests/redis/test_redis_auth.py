"""Every Redis, replica and Sentinel of docker-compose.yml asks a password (issue 20, defect 9).

Whoever can write to Redis can forge a staff session or run code in the web processes and
the workers (the cache and rq's jobs are pickled). The servers here are started by the very
scripts the compose services run (deploy/redis-ha/redis-start.sh and sentinel-start.sh,
which write the ACL users from REDIS_PASSWORD), on free ports of 127.0.0.1: a client without
the password is refused; the site's URLs, which carry it, get in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pubsub_site.cluster import free_port
from pubsub_site.redis.urls import sync_pool
from pubsub_site.tests.deploy.files import ENV_EXAMPLE, PRODUCTION, compose_config, health_test

SCRIPTS = Path(__file__).resolve().parents[3] / "deploy" / "redis-ha"
PASSWORD = "a-test-redis-password-0123456789"


class ScriptedServer:
    """A redis-server or Sentinel started through its deploy/redis-ha script."""

    def __init__(self, script: str, env: dict[str, str], *args: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pubsub-redis-auth-"))
        self.port = free_port()
        if script == "redis-start.sh":
            args = (*args, "--dir", str(self.dir))  # its files (a replica's copy) in its own directory
        self.process = subprocess.Popen(
            ["sh", str(SCRIPTS / script), *args],
            env={"PATH": os.environ["PATH"], "REDIS_SERVER": "redis-server", "SENTINEL_SERVER": "redis-server",
                 "REDIS_AUTH_DIR": str(self.dir), "SENTINEL_DIR": str(self.dir), "REDIS_PORT": str(self.port),
                 "SENTINEL_PORT": str(self.port), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def client(self, **auth: str) -> redis.Redis:
        # No retry: redis-py retries a refused AUTH (an AuthenticationError is a ConnectionError)
        # with backoff, seconds of it.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            **auth,
        )

    def wait(self, **auth: str) -> ScriptedServer:
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client(**auth).ping()
                return self
            except redis.ConnectionError:
                assert self.process.poll() is None, f"{self.process.args} exited with {self.process.returncode}"
                assert time.monotonic() < deadline, "did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def servers():
    started: list[ScriptedServer] = []

    def start(script: str, env: dict[str, str], *args: str) -> ScriptedServer:
        server = ScriptedServer(script, {"REDIS_PASSWORD": PASSWORD, **env}, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def refused(client: redis.Redis) -> bool:
    try:
        client.set("pubsub:forged-session", "x")
    except redis.AuthenticationError:
        return True  # a wrong password
    except redis.ResponseError as error:
        return "NOAUTH" in str(error)  # none
    return False


@pytest.mark.processes
def test_redis_its_replica_and_a_sentinel_refuse_a_client_without_the_password(servers):
    primary = servers("redis-start.sh", {}, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
    primary.wait(password=PASSWORD)
    assert refused(primary.client())
    assert refused(primary.client(username="pubsub", password="wrong-password"))
    site = redis.Redis.from_url(f"redis://pubsub:{PASSWORD}@127.0.0.1:{primary.port}/0", decode_responses=True)
    site.set("pubsub:test", "written by the site's user")

    replica = servers(
        "redis-start.sh", {"REDIS_REPLICA_OF": f"127.0.0.1 {primary.port}"}, "--bind", "127.0.0.1", "--save", ""
    )
    replica.wait(password=PASSWORD)
    assert refused(replica.client())
    deadline = time.monotonic() + 20
    while replica.client(password=PASSWORD).get("pubsub:test") is None:  # replication logs in too
        assert time.monotonic() < deadline, replica.client(password=PASSWORD).info("replication")
        time.sleep(0.05)

    sentinel = servers(
        "sentinel-start.sh", {"REDIS_PRIMARY_HOST": "127.0.0.1", "REDIS_PRIMARY_PORT": str(primary.port)}
    )
    sentinel.wait(password=PASSWORD)
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        sentinel.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "pubsub")
    # The form docs/deploy.md and .env.example give.
    url = f"redis+sentinel://pubsub:{PASSWORD}@127.0.0.1:{sentinel.port}/pubsub/0?sentinel_password={PASSWORD}"
    deadline = time.monotonic() + 20
    while True:
        try:
            through_sentinel = redis.Redis(connection_pool=sync_pool(url), decode_responses=True)
            assert through_sentinel.get("pubsub:test") == b"written by the site's user"
            break
        except redis.RedisError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_the_scripts_leave_a_server_without_a_password_as_it_was(tmp_path):
    """Development (make run) starts no script; a script without REDIS_PASSWORD adds nothing."""
    env = {"PATH": os.environ["PATH"], "REDIS_SERVER": "echo", "REDIS_PORT": "7000", "REDIS_AUTH_DIR": str(tmp_path)}
    started = subprocess.run(["sh", str(SCRIPTS / "redis-start.sh")], env=env, capture_output=True, text=True)
    assert started.stdout.split() == ["--port", "7000"]
    assert not list(tmp_path.iterdir())


def test_a_password_with_spaces_or_quotes_is_refused_before_anything_starts(tmp_path):
    env = {"PATH": os.environ["PATH"], "REDIS_SERVER": "echo", "REDIS_AUTH_DIR": str(tmp_path)}
    started = subprocess.run(
        ["sh", str(SCRIPTS / "redis-start.sh")],
        env={**env, "REDIS_PASSWORD": "two words"},
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0 and "REDIS_PASSWORD" in started.stderr


# --- the compose file -------------------------------------------------------------------


@pytest.fixture(scope="module")
def production() -> dict:
    return compose_config(PRODUCTION, env_file=ENV_EXAMPLE)


REDIS_SERVICES = ("redis", "redis-replica", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3")


def test_every_redis_replica_and_sentinel_is_started_with_the_password(production):
    services = production["services"]
    password = services["redis"]["environment"]["REDIS_PASSWORD"]
    assert len(password) >= 16
    for name in REDIS_SERVICES:
        service = services[name]
        command = " ".join(service["command"]) if isinstance(service["command"], list) else service["command"]
        assert re.search(r"/etc/pubsub-redis/(redis|sentinel)-start\.sh", command), name
        assert service["environment"]["REDIS_PASSWORD"] == password, name
        assert service["environment"]["REDISCLI_AUTH"] == password, name  # the health check's redis-cli
        assert "ping" in " ".join(health_test(service)), name


def test_the_sites_redis_url_carries_the_password_of_the_redis_it_names(production):
    services = production["services"]
    password = services["redis"]["environment"]["REDIS_PASSWORD"]
    for name in ("web", "worker", "migrate"):
        url = urlsplit(services[name]["environment"]["REDIS_URL"])
        assert (url.username, url.password, url.hostname) == ("pubsub", password, "redis"), name
    example = ENV_EXAMPLE.read_text()
    sentinel_url = re.search(r"^# REDIS_URL=(redis\+sentinel://\S+)$", example, re.M).group(1)
    assert f"pubsub:{password}@" in sentinel_url and f"sentinel_password={password}" in sentinel_url
