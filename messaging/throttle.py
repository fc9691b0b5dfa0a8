"""Per-user limits on the WebSocket, counted in Redis so they hold across web processes.

The counters use the `limits` library's async API (moving window) on the room's
Redis server, through the process's own asyncio pool for the running loop.
Slow mode, a minimum interval between one member's messages, is a key that expires.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from django.conf import settings
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from messaging.buffer import RoomKeys
from pubsub_site.redis_client import get_async_redis, room_redis_url

_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MovingWindowRateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _limiter(room_id: int) -> MovingWindowRateLimiter:
    url = room_redis_url(room_id)
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(url)
    if limiter is None:
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            connection_pool=get_async_redis(url=url).connection_pool,
            key_prefix="pubsub:ratelimit:ws",
        )
        limiter = per_loop[url] = MovingWindowRateLimiter(storage)
    return limiter


async def retry_after(*, action: str, room_id: int, user_id: int) -> float | None:
    """Count one ``action``; None when allowed, else seconds until it would be."""
    item = parse(settings.WS_RATE_LIMITS[action])
    limiter = _limiter(room_id)
    identifiers = (action, str(room_id), str(user_id))
    if await limiter.hit(item, *identifiers):
        return None
    stats = await limiter.get_window_stats(item, *identifiers)
    return max(0.1, round(stats.reset_time - time.time(), 2))


async def slow_mode_wait(*, room_id: int, user_id: int, interval: int) -> float | None:
    """Claim the user's next message slot in a room in slow mode; None when it is free."""
    client = get_async_redis(room_id)
    key = f"{RoomKeys(room_id).prefix}:slow:{user_id}"
    if await client.set(key, 1, nx=True, ex=interval):
        return None
    remaining_ms = await client.pttl(key)
    return max(0.1, round(remaining_ms / 1000, 2)) if remaining_ms > 0 else 0.1
