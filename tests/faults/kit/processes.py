"""Processes and the suite's servers, for the clusters a fault test builds itself: their
environment, the suite's Redis database (directly or through a proxy), users, web processes
and rq workers started and waited for, and what a process used and logged (memory, logs,
tracebacks)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings

from conftest import GENEROUS_WS_LIMITS
from pubsub_site.cluster import Cluster, wait_for_http
from tests.conftest import database_url


def base_env(**overrides: str) -> dict[str, str]:
    """The environment of the cluster fixture, for clusters a test builds itself."""
    env = {
        "DJANGO_ENV": "development",
        "DEBUG": "0",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "ROOM_REDIS_URLS": ",".join(settings.ROOM_REDIS_URLS),
        "CHANNEL_REDIS_URLS": ",".join(settings.CHANNEL_REDIS_URLS),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        **{f"WS_RATE_LIMIT_{action.upper()}": rate for action, rate in GENEROUS_WS_LIMITS.items()},
    }
    env.update(overrides)
    return env


def redis_env(url: str, **overrides: str) -> dict[str, str]:
    """Everything Redis (rq queue, cache, rooms, channel layer) on one URL."""
    return base_env(REDIS_URL=url, ROOM_REDIS_URLS=url, CHANNEL_REDIS_URLS=url, **overrides)


def suite_redis_url() -> str:
    """The suite's Redis database (``REDIS_URL``): what the tests' clusters use unless told otherwise."""
    return settings.REDIS_URL


def suite_redis_port() -> int:
    return urlsplit(suite_redis_url()).port or 6379


def through_proxy(proxy_port: int) -> str:
    """The suite's Redis database, reached through a proxy listening on ``proxy_port``."""
    parts = urlsplit(suite_redis_url())
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{proxy_port}"))


def make_users(count: int, prefix: str = "user") -> list:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    return [model.objects.create_user(f"{prefix}{i}", password="x-long-password") for i in range(count)]


def start_webs(cluster: Cluster, count: int) -> list[int]:
    """Start ``count`` web processes at once and wait for all of them."""
    ports = [cluster.start_web(wait=False) for _ in range(count)]
    for port in ports:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    return ports


def wait_for_workers(redis_url: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` rq workers have registered (a worker starts in a second or two)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while client.scard("rq:workers") < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} workers did not register within {timeout} s")
        time.sleep(0.05)


def web_pid(cluster: Cluster, port: int) -> int:
    return cluster.webs[port].pid


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log_text(cluster: Cluster, prefix: str = "web") -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(cluster.log_dir.glob(f"{prefix}*.log")))


def tracebacks(cluster: Cluster, prefix: str = "web") -> str:
    """How many tracebacks the processes logged, by the exception that ended each."""
    lines = log_text(cluster, prefix).splitlines()
    ends: Counter = Counter()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            ends[lines[j][:100] if j < len(lines) else "?"] += 1
    return f"{sum(ends.values())}" + (f" {dict(ends)}" if ends else "")
