"""Calls of a Lua script that arrive together go to Redis together: one pipeline, one round trip.

Every socket's ``send`` stores its message with one EVALSHA (``messaging.store.buffer.append``).
Made one by one, each call takes a connection from the pool, writes its own request and reads
its own reply: a system call each way and redis-py's round-trip machinery, per message. Here
the calls made during one turn of the event loop are written as one pipeline at the next turn,
and each caller gets its own reply (or its own error), as if it had called alone.

Guarantees: the calls of one pipeline reach Redis in the order they were made (a pipeline runs
its commands in order, on one connection), and what one caller awaits before its next call keeps
its order (a socket awaits its send's ack before the next). Calls of different pipelines (another
turn, or past ``BATCH_MAX``) go on other connections and may interleave as lone calls would: the
seq is given by the script, atomically, whichever arrives first. A command's error (NOSCRIPT
is handled here: the script is loaded and those calls sent again, in order) goes to its caller
only; a failure of the connection goes to every caller of the batch, each of which sees the
``RedisError`` a lone call would have raised. A caller cancelled while it waits does not stop
the others' calls (nor its own, which may have been written already, as with a lone call).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from messaging.store.lua import LuaScript

# Calls past this many wait for the next pipeline (a bound on one write and one read).
BATCH_MAX = 256


class _Batcher:
    """One client's calls waiting for the next turn of its event loop."""

    __slots__ = ("client", "loop", "waiting")

    def __init__(self, client: aioredis.Redis, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.waiting: list[tuple[LuaScript, Sequence, Sequence, asyncio.Future]] = []

    def call(self, script: LuaScript, keys: Sequence, args: Sequence) -> asyncio.Future:
        future = self.loop.create_future()
        if not self.waiting:
            self.loop.call_soon(self._flush)
        self.waiting.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        calls, self.waiting = self.waiting, []
        for start in range(0, len(calls), BATCH_MAX):
            self.loop.create_task(self._execute(calls[start : start + BATCH_MAX]))

    async def _execute(self, calls: list[tuple[LuaScript, Sequence, Sequence, asyncio.Future]]) -> None:
        try:
            for _ in range(2):  # the second time after loading scripts a server did not know
                pipe = self.client.pipeline(transaction=False)
                for script, keys, args, _future in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                unknown = []
                for call, reply in zip(calls, replies, strict=True):
                    if isinstance(reply, NoScriptError):
                        unknown.append(call)
                    else:
                        _settle(call[3], reply)
                if not unknown:
                    return
                for text in dict.fromkeys(script.text for script, *_ in unknown):
                    await self.client.script_load(text)
                calls = unknown
            for *_, future in calls:
                _settle(future, NoScriptError("the script was loaded and is still unknown"))
        except BaseException as error:  # the connection failed (or the loop is closing): every caller hears it
            for *_, future in calls:
                if isinstance(error, Exception):
                    _settle(future, error)
                else:
                    future.cancel()
            if not isinstance(error, Exception):
                raise


def _settle(future: asyncio.Future, reply: object) -> None:
    if future.done():
        return  # its caller was cancelled
    if isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)


_batchers: weakref.WeakKeyDictionary[aioredis.Redis, _Batcher] = weakref.WeakKeyDictionary()


async def run_batched(client: aioredis.Redis, script: LuaScript, keys: Sequence, args: Sequence = ()):
    """``script.arun(client, keys, args)``, written to Redis with the other calls of this turn
    of the event loop (``client`` belongs to the running loop, as every asyncio client here)."""
    batcher = _batchers.get(client)
    if batcher is None:
        batcher = _batchers[client] = _Batcher(client, asyncio.get_running_loop())
    return await batcher.call(script, keys, args)
