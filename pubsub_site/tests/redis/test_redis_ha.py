"""The `ha` profile of docker-compose.yml (two replicas of `redis` and three Sentinels) and the
start scripts of deploy/redis-ha/, run for real against a Sentinel of the test's own."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pubsub_site.tests.deploy.files import (
    PRODUCTION,
    command_of,
    compose_config,
    health_test,
    volume_mounts,
)
from tests.faults.kit import RedisServer, Sentinels

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "deploy" / "redis-ha"
REPLICAS = ("redis-replica", "redis-replica-2")
HA = {*REPLICAS, "sentinel-1", "sentinel-2", "sentinel-3"}


@pytest.fixture(scope="module")
def production() -> dict:
    return compose_config(PRODUCTION)


def test_the_ha_profile_adds_two_replicas_and_three_sentinels_and_nothing_else_changes(production):
    services = production["services"]
    assert {name for name, s in services.items() if s.get("profiles") == ["ha"]} == HA
    assert {name for name, s in services.items() if "profiles" not in s} >= {"web", "worker", "redis", "postgres"}
    for name in HA:
        service = services[name]
        assert service["image"] == services["redis"]["image"], name
        assert service["restart"] == "unless-stopped", name
        assert health_test(service), name
        assert Path(volume_mounts(service)["/etc/pubsub-redis"]).resolve() == SCRIPTS, name
        assert service.get("ports", []) == [], name  # nothing published: the compose network only
    # Each Sentinel keeps its own rewritten configuration on its own volume.
    volumes = {volume_mounts(services[f"sentinel-{i}"])["/data"] for i in (1, 2, 3)}
    assert len(volumes) == 3 and volumes <= set(production["volumes"])
    # Two replicas (with REDIS_WAIT_REPLICAS=1 the promoted one still has one to confirm to),
    # each with its own data.
    volumes = {volume_mounts(services[name])["/data"] for name in REPLICAS}
    assert len(volumes) == 2 and volumes <= set(production["volumes"])
    for name in REPLICAS:
        replica = services[name]
        assert "redis-start.sh" in command_of(replica)
        assert "--appendonly yes" in command_of(replica) and "--appendfsync everysec" in command_of(replica)
        assert replica["environment"]["REDIS_REPLICA_OF"] == "redis 6379"
    for i in (1, 2, 3):
        environment = services[f"sentinel-{i}"]["environment"]
        assert (environment["REDIS_PRIMARY_HOST"], environment["SENTINEL_QUORUM"]) == ("redis", "2")
    # The site's processes can be told to wait for a replica (off unless .env says so).
    assert production["services"]["web"]["environment"]["REDIS_WAIT_REPLICAS"] == "0"


def run_script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SCRIPTS / name), *args],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


def test_the_sentinel_script_writes_its_configuration_once_and_keeps_what_sentinel_rewrote(tmp_path):
    env = {"SENTINEL_DIR": str(tmp_path), "SENTINEL_SERVER": "echo", "REDIS_PRIMARY_HOST": "10.0.1.5"}
    started = run_script("sentinel-start.sh", **env)
    assert started.stdout.split() == [str(tmp_path / "sentinel.conf"), "--sentinel"]
    conf = (tmp_path / "sentinel.conf").read_text()
    assert "sentinel monitor pubsub 10.0.1.5 6379 2\n" in conf
    assert "sentinel down-after-milliseconds pubsub 5000\n" in conf
    assert conf.index("resolve-hostnames yes") < conf.index("sentinel monitor")
    (tmp_path / "sentinel.conf").write_text(conf + "sentinel known-replica pubsub 10.0.2.5 6379\n")
    run_script("sentinel-start.sh", **{**env, "REDIS_PRIMARY_HOST": "elsewhere"})
    assert "known-replica" in (tmp_path / "sentinel.conf").read_text()  # not written over


def test_the_scripts_give_redis_and_sentinel_the_first_primarys_address_not_its_name(tmp_path):
    """A name Sentinel or a replica was given is resolved again later, also once its container
    is dead, when Docker's DNS may take 10-20 s to say so (tests/container/test_redis_failover.py)."""
    address = subprocess.run(["getent", "hosts", "localhost"], capture_output=True, text=True).stdout.split()[0]
    run_script("sentinel-start.sh", SENTINEL_DIR=str(tmp_path), SENTINEL_SERVER="echo", REDIS_PRIMARY_HOST="localhost")
    assert f"sentinel monitor pubsub {address} 6379 2\n" in (tmp_path / "sentinel.conf").read_text()
    env = {"REDIS_SERVER": "echo", "REDIS_SENTINELS": "127.0.0.1:1", "REDIS_SELF": "10.9.9.9"}
    started = run_script("redis-start.sh", **env, REDIS_REPLICA_OF="localhost 6379")
    assert started.stdout.split()[-3:] == ["--replicaof", address, "6379"]


@pytest.mark.processes
def test_the_redis_script_starts_as_the_replica_of_whoever_the_sentinels_say_is_primary():
    primary = RedisServer(appendonly=False).start()
    sentinel = Sentinels(primary.port, count=1, quorum=1).start(wait=False)
    try:
        deadline = time.monotonic() + 20
        while sentinel.master_port_now() != primary.port:
            assert time.monotonic() < deadline, "the Sentinel did not answer"
            time.sleep(0.05)
        env = {
            "REDIS_SENTINELS": f"127.0.0.1:1 127.0.0.1:{sentinel.ports[0]}",  # the first one is down
            "REDIS_MASTER_NAME": sentinel.name,
            "REDIS_SELF": "127.0.0.1",
            "REDIS_SERVER": "echo",
        }
        # Another machine: the primary's replica.
        other = run_script("redis-start.sh", "--appendonly", "yes", **env, REDIS_PORT="7000").stdout.split()
        assert other == ["--port", "7000", "--appendonly", "yes", "--replicaof", "127.0.0.1", str(primary.port)]
        # The primary itself, restarted before any failover: a primary still.
        itself = run_script("redis-start.sh", **env, REDIS_PORT=str(primary.port)).stdout.split()
        assert itself == ["--port", str(primary.port)]
        # No Sentinel answers (the first start): REDIS_REPLICA_OF, or a primary without it.
        alone = {**env, "REDIS_SENTINELS": "127.0.0.1:1", "REDIS_PORT": "7000"}
        assert run_script("redis-start.sh", **alone, REDIS_REPLICA_OF="redis 6379").stdout.split()[-3:] == [
            "--replicaof",
            "redis",
            "6379",
        ]
        assert run_script("redis-start.sh", **alone).stdout.split() == ["--port", "7000"]
    finally:
        sentinel.stop()
        primary.stop()
