"""Who calls the API: ``Authorization: Bearer psk_…`` recognised (api.tokens), then counted.

Every request of a token counts against ``API_RATE_LIMIT`` (a moving window in Redis, the
`limits` library's async API), whatever it asks; past it the answer is 429 with
``Retry-After``. The limits of what it does (sends, edits, claps) are the users' own, counted
where a socket's are (messaging.posting).
"""

from __future__ import annotations

import asyncio
import time
import weakref

from django.conf import settings
from django.http import HttpRequest
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from ninja.security import HttpBearer

from api.errors import ApiError
from api.tokens import Grant, atoken_grant
from pubsub_site.redis.client import get_async_redis

_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MovingWindowRateLimiter] = weakref.WeakKeyDictionary()


def _limiter() -> MovingWindowRateLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        url = settings.REDIS_URL
        storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            connection_pool=get_async_redis(url=url).connection_pool,
            key_prefix="pubsub:ratelimit:api",
        )
        limiter = _limiters[loop] = MovingWindowRateLimiter(storage)
    return limiter


async def check_rate(kind: str, key: int) -> None:
    """Count one request of ``kind`` ("token", "webhook") number ``key``; 429 past the limit."""
    item = parse(settings.API_RATE_LIMIT)
    limiter = _limiter()
    if await limiter.hit(item, kind, str(key)):
        return
    stats = await limiter.get_window_stats(item, kind, str(key))
    wait = max(0.1, round(stats.reset_time - time.time(), 2))
    raise ApiError("rate_limited", "Too many requests for this token; slow down.", retry_after=wait)


class TokenAuth(HttpBearer):
    """The API's authentication: the request's ``auth`` is the token's Grant."""

    async def authenticate(self, request: HttpRequest, token: str) -> Grant | None:
        grant = await atoken_grant(token)
        if grant is not None:
            await check_rate("token", grant.token_id)
        return grant
