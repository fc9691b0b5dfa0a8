"""The process-wide Redis clients: one pool per server, shared by consumers, views and jobs.

Room state (sequence numbers, buffers, rate limits) lives on one server per room,
chosen by ``room_id`` over ``settings.ROOM_REDIS_URLS``; with one URL every room
lives on it. A URL is a plain one or a Sentinel service (``redis+sentinel://...``,
``pubsub_site.redis.urls``): then each new connection asks the Sentinels for the
current primary, and a failover is followed.

Fork safety: redis-py's synchronous pool notices a changed PID and drops the
parent's sockets. The asyncio pools are bound to the event loop that made them,
so they are kept per loop (weakly: a closed and collected loop takes its clients
with it) and per PID: a forked child or a new loop gets its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.driver_info import DriverInfo
from redis.utils import get_lib_version

from pubsub_site.redis import urls as redis_urls

_lock = threading.Lock()
_sync_clients: dict[str, redis.Redis] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, dict[str, aioredis.Redis]]] = (
    weakref.WeakKeyDictionary()
)

_POOL_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 30,
    "max_connections": 200,
    # Said once (CLIENT SETINFO) on every new connection: made here once, since redis-py
    # otherwise reads its version from the package metadata for each connection it opens
    # (a millisecond apiece, dozens of them when a reconnect storm widens the pool).
    "driver_info": DriverInfo(name="redis-py", lib_version=get_lib_version()),
}


def room_redis_url(room_id: int | None) -> str:
    urls = settings.ROOM_REDIS_URLS
    if room_id is None:
        return urls[0]
    return urls[room_id % len(urls)]


def all_room_redis_urls() -> list[str]:
    return list(settings.ROOM_REDIS_URLS)


def get_redis(room_id: int | None = None, *, url: str | None = None) -> redis.Redis:
    """The synchronous client for the server that holds ``room_id``'s state."""
    url = url or room_redis_url(room_id)
    client = _sync_clients.get(url)
    if client is None:
        with _lock:
            client = _sync_clients.get(url)
            if client is None:
                pool = redis_urls.sync_pool(url, blocking_timeout=5, **_POOL_OPTIONS)
                client = redis.Redis(connection_pool=pool)
                _sync_clients[url] = client
    return client


def new_redis(url: str, **options) -> redis.Redis:
    """A synchronous client with a pool of its own (plain URL or Sentinel service), for a
    thread that must not share the process's pools (the worker's sweep)."""
    return redis_urls.sync_client(url, **options)


class SharedConnectionPool:
    """Django's RedisCache (CACHES ``OPTIONS["pool_class"]``) on the process-wide pool of its URL.

    Django makes a cache backend, and with it a pool, per thread and per asyncio context:
    every WebSocket handshake (its session is read from the cache) opened a connection to
    Redis, and redis-py reads its own version from the package metadata for each one. This
    hands Django the pool ``get_redis`` keeps for the URL instead."""

    @classmethod
    def from_url(cls, url: str, **options) -> redis.ConnectionPool:
        return get_redis(url=url).connection_pool


def get_async_redis(room_id: int | None = None, *, url: str | None = None) -> aioredis.Redis:
    """The asyncio client for ``room_id``'s server, for the running event loop."""
    url = url or room_redis_url(room_id)
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    owner, clients = _async_clients.get(loop, (pid, {}))
    if owner != pid:
        clients = {}
    client = clients.get(url)
    if client is None:
        pool = redis_urls.async_pool(url, blocking_timeout=5, **_POOL_OPTIONS)
        client = aioredis.Redis(connection_pool=pool)
        clients[url] = client
        _async_clients[loop] = (pid, clients)
    return client


async def close_async_clients_for_running_loop() -> None:
    """Release the running loop's pools (tests make a loop per test)."""
    _, clients = _async_clients.pop(asyncio.get_running_loop(), (0, {}))
    for client in clients.values():
        await client.aclose()
