"""Per-user limits on the WebSocket, counted in Redis so they hold across web processes.

Sending a message: the limit (``WS_RATE_LIMITS["send"]``, a moving window) and slow mode
(a minimum interval between one member's messages) are checked and counted by the
append script itself (``messaging.store.buffer.APPEND_SCRIPT``), so a send is one Redis call;
``send_limits`` says what that script enforces.

The other actions: the `limits` library's async API (moving window) on the room's
Redis server, through the process's own asyncio pool for the running loop.

Limits of one socket (its subscribe frames): ``LocalWindow``, in the socket's own memory.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import deque

from django.conf import settings
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from messaging.store.buffer import SendLimits
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


def send_limits(*, slow_mode_seconds: int) -> SendLimits:
    """The limits on a user's new messages from the WebSocket, for ``message_send``
    (``slow_mode_seconds`` 0: the room is not in slow mode, or the user moderates it)."""
    per_window, window_ms = _window(settings.WS_RATE_LIMITS["send"])
    return SendLimits(per_window=per_window, window_ms=window_ms, slow_mode_ms=slow_mode_seconds * 1000)


@functools.lru_cache(maxsize=16)
def _window(limit: str) -> tuple[int, int]:
    """(amount, window in ms) of a limit such as "10/2second": parsed once per text, not per send."""
    item = parse(limit)
    return item.amount, item.get_expiry() * 1000


class LocalWindow:
    """A moving window kept by one socket in its own memory: no Redis call, nothing shared."""

    __slots__ = ("hits",)

    def __init__(self) -> None:
        self.hits: deque[float] = deque()

    def retry_after(self, limit: str) -> float | None:
        """Count one hit under ``limit`` (e.g. "20/10second"); None when allowed, else the
        seconds until it would be (a refused hit is not counted)."""
        amount, window_ms = _window(limit)
        window = window_ms / 1000
        now = time.monotonic()
        while self.hits and self.hits[0] <= now - window:
            self.hits.popleft()
        if len(self.hits) >= amount:
            return max(0.1, round(self.hits[0] + window - now, 2))
        self.hits.append(now)
        return None
