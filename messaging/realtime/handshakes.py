"""Handshakes a few at a time: a reconnect storm drains in order instead of stalling.

Guarantee: at most ``WS_HANDSHAKE_LIMIT`` handshakes of a process do their database and
Redis work at once; one that cannot start within ``WS_HANDSHAKE_WAIT`` seconds is closed
with 1013 (Try Again Later), never left hanging.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextvars import ContextVar

from messaging import metrics
from messaging.realtime.sockets import daphne_protocol, send_close_below_autobahn

TRY_AGAIN_LATER = 1013  # RFC 6455 close code registry: the server is overloaded

# The release of the running handshake's slot, in the context of its connection's task.
_release: ContextVar[Callable[[], None] | None] = ContextVar("handshake_release", default=None)


async def try_again_later(send) -> None:
    """Answer a handshake the process cannot serve now: accepted, then closed at once with
    1013, which a client retries after its backoff (a refusal would be a 403, which the
    contract keeps for "not signed in" and "foreign origin")."""
    await send({"type": "websocket.accept"})
    if not send_close_below_autobahn(daphne_protocol(send), TRY_AGAIN_LATER):
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})


def handshake_done() -> None:
    """The handshake of the connection being served is accepted or refused: let the next one
    in. Only the first call counts; without a limit it does nothing."""
    release = _release.get()
    if release is not None:
        _release.set(None)
        release()


class HandshakeLimit:
    """At most `limit` WebSocket handshakes at work at once in this process; the others
    wait their turn, for up to `wait` seconds, before any database work.

    In a reconnect storm every handshake costs a database hop and a few Redis calls; all at
    once they share the process's one core and every one of them takes the time of all
    (under daphne they passed its 5 s handshake timeout and nobody got in). Taken a few at
    a time each finishes in milliseconds and the queue drains in order. A handshake
    that waited `wait` seconds in vain is accepted and closed at once with 1013 (Try
    Again Later): the client reconnects after its backoff, as after any close. (Not
    403: the contract keeps that for "not signed in" and "foreign origin", which a
    client must not retry.) The consumer calls ``handshake_done()`` once it has accepted
    or refused: the slot's release is in the connection's context (a context variable, not
    a copy of the scope that the connection would carry for its whole life).
    """

    def __init__(self, app, limit: int, wait: float):
        self.app = app
        self.limit = limit
        self.wait = wait
        self.slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or self.limit <= 0:
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        slots = self.slots.get(loop)
        if slots is None:
            slots = self.slots[loop] = asyncio.Semaphore(self.limit)
        try:
            if slots.locked():
                async with asyncio.timeout(self.wait):  # a timer, no task (wait_for made one a handshake)
                    await slots.acquire()
            else:
                await slots.acquire()  # free: no timer
        except TimeoutError:
            metrics.handshake_refused("try_again_later")
            await receive()  # websocket.connect
            await try_again_later(send)
            return None
        token = _release.set(slots.release)
        try:
            return await self.app(scope, receive, send)
        finally:
            handshake_done()
            _release.reset(token)
