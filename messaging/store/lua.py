"""Lua scripts called by their SHA: the one helper every module that changes Redis in one step uses
(the buffer, the changes, presence, online)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script


class LuaScript:
    """A Lua script called by its SHA (EVALSHA) through redis-py's script objects, which
    load it (SCRIPT LOAD) when a server answers NOSCRIPT: a new, restarted or flushed one.

    The script objects are made once, by the first client, and are always called with
    the client at hand: the SHA does not depend on the client, and asyncio clients
    belong to one event loop."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._sync: Script | None = None
        self._async: AsyncScript | None = None

    def run(self, client: redis.Redis, keys: Sequence, args: Sequence = ()):
        if self._sync is None:
            self._sync = client.register_script(self.text)
        return self._sync(keys=keys, args=args, client=client)

    async def arun(self, client: aioredis.Redis, keys: Sequence, args: Sequence = ()):
        if self._async is None:
            self._async = client.register_script(self.text)
        return await self._async(keys=keys, args=args, client=client)
