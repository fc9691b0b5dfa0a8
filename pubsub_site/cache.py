"""Django's Redis cache, with reads that stay on the event loop.

Guarantee: ``aget`` returns what ``get`` would (the same key, server and serializer),
without the thread hop of Django's default ``aget`` (``sync_to_async(get)``): a WebSocket
handshake reads its session through it (``SESSION_ENGINE`` cached_db), a thousand of them
in a reconnect storm, and the reads asked while one is in flight go together as one MGET
(pubsub_site.coalesce). Everything else is Django's RedisCache as it is.
"""

from __future__ import annotations

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

from pubsub_site import coalesce
from pubsub_site.redis.client import get_async_redis


class RedisCache(DjangoRedisCache):
    async def aget(self, key, default=None, version=None):
        # Django reads from servers[0] when there is one server, and from a random replica
        # (servers[1:]) otherwise; the native read is for the one-server case only.
        if len(self._servers) != 1:
            return await super().aget(key, default, version)
        key = self.make_and_validate_key(key, version=version)
        url = self._servers[0]
        value = await coalesce.for_loop(("cache.mget", url), lambda: coalesce.Coalescer(_mget(url))).get(key)
        if value is None:
            return default
        return self._cache._serializer.loads(value)


def _mget(url: str):
    async def many(keys: list[str]) -> list[bytes | None]:
        return await get_async_redis(url=url).mget(keys)

    return many
