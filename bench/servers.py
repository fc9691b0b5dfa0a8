"""The servers a section measures, started fresh for it: the environment they run with (DEBUG off,
the per-user and per-token limits raised out of the benchmark's reach), the web processes and
the rq worker (``pubsub_site.cluster.Cluster``), the Redis replica a ``-replica`` configuration
waits for, and the pids whose CPU counts as the web's (granian's worker included).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.plan import BENCH_SEND_LIMIT, CHANNEL_LAYER, Plan, ServerConfig
from pubsub_site.cluster import Cluster, descendants, free_port


def server_env(plan: Plan) -> dict[str, str]:
    return {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": plan.database_url,
        "REDIS_URL": plan.redis_url,
        "ROOM_REDIS_URLS": plan.redis_url,
        "CHANNEL_REDIS_URLS": plan.redis_url,
        "CHANNEL_LAYER": CHANNEL_LAYER,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # The per-user send limit (5 a second) would refuse the benchmark's members, who send
        # faster than people do: it still runs on every send, but with a ceiling nobody reaches.
        "WS_RATE_LIMIT_SEND": BENCH_SEND_LIMIT,
        # The same for the API's per-token limit (the "api" section's one token publishes for all).
        "API_RATE_LIMIT": "10000000/minute",
    }


@dataclass
class BenchCluster(Cluster):
    """The servers of one section, and the Redis replica it started, if any."""

    replica: subprocess.Popen | None = None

    def stop(self, *, graceful: bool = True) -> None:
        super().stop(graceful=graceful)
        if self.replica is not None and self.replica.poll() is None:
            self.replica.terminate()
            try:
                self.replica.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.replica.kill()
                self.replica.wait()
        self.replica = None


def start_replica(plan: Plan, log_dir: Path, timeout: float = 60) -> subprocess.Popen:
    """A redis-server replicating the benchmark's Redis, on a free port, no persistence of its
    own; returns once the primary counts it in WAIT (its copy loaded and acknowledged)."""
    import redis

    primary = redis.Redis.from_url(plan.redis_url)
    address = primary.connection_pool.connection_kwargs
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(log_dir), "--logfile", str(log_dir / "redis-replica.log"),
            "--replicaof", address.get("host", "127.0.0.1"), str(address.get("port", 6379)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while primary.wait(1, 200) < 1:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the replica on port {port} did not catch up with {plan.redis_url}")
    return process


def start_servers(plan: Plan, config: ServerConfig, *, worker: bool = True) -> Cluster:
    env = server_env(plan)
    if config.replica:
        env["REDIS_WAIT_REPLICAS"] = "1"
    cluster = BenchCluster(
        env=env,
        web_command=config.web_command,
        log_dir=Path(tempfile.mkdtemp(prefix=f"pubsub-bench-{config.key}-")),
    )
    try:
        if config.replica:
            cluster.replica = start_replica(plan, cluster.log_dir)
        for _ in range(config.webs):
            cluster.start_web()
        if worker:
            cluster.start_worker()
    except Exception:
        print(cluster.logs(), file=sys.stderr)
        cluster.stop()
        raise
    return cluster


def web_pids(cluster: Cluster) -> list[int]:
    """The web processes and the processes they started (granian's worker)."""
    return [pid for p in cluster.webs.values() for pid in (p.pid, *descendants(p.pid))]
