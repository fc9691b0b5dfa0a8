"""Handshakes a few at a time: a reconnect storm drains in order instead of stalling.

Guarantees: at most ``WS_HANDSHAKE_LIMIT`` handshakes of a process do their database and
Redis work at once; one that cannot start within ``WS_HANDSHAKE_WAIT`` seconds is closed
with 1013 (Try Again Later), never left hanging, and one that the queue ahead of it would
keep waiting longer than that (at the rate the process has been finishing handshakes) is
closed so at once. Each of them is told first when to come back (a ``reconnect`` frame,
``after_ms``): the turns the process hands out are spread at that rate, so a storm comes
back as fast as the process can take it and no faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import Callable
from contextvars import ContextVar

from messaging import metrics
from messaging.realtime.sockets import daphne_protocol, send_close_below_autobahn
from protocol.wire import encode, reconnect_frame

TRY_AGAIN_LATER = 1013  # RFC 6455 close code registry: the server is overloaded
# The longest wait a refused client is asked for: past it the process's estimate is a guess.
COME_BACK_MAX_SECONDS = 60.0

# The release of the running handshake's slot, in the context of its connection's task.
_release: ContextVar[Callable[[], None] | None] = ContextVar("handshake_release", default=None)


async def try_again_later(send, *, after_ms: int | None = None) -> None:
    """Answer a handshake the process cannot serve now: accepted, told when to come back
    (``after_ms``: a ``reconnect`` frame, as a draining process sends), then closed at once
    with 1013, which a client retries after that wait, or after its backoff if it reads no
    such frame (a refusal would be a 403, which the contract keeps for "not signed in" and
    "foreign origin")."""
    await send({"type": "websocket.accept"})
    if after_ms is not None:
        # A client that left while it waited gets no hint: uvicorn drops an accept on a closing
        # connection and then refuses a frame (RuntimeError), or says the client is gone
        # (OSError). The close still goes (it completes the handshake as uvicorn sees it).
        with contextlib.suppress(RuntimeError, OSError):
            await send({"type": "websocket.send", "text": encode(reconnect_frame(after_ms=after_ms))})
    if not send_close_below_autobahn(daphne_protocol(send), TRY_AGAIN_LATER):
        await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})


def handshake_done() -> None:
    """The handshake of the connection being served is accepted or refused: let the next one
    in. Only the first call counts; without a limit it does nothing."""
    release = _release.get()
    if release is not None:
        _release.set(None)
        release()


class Rate:
    """Events a second over the last one to two seconds: the previous whole second and the
    current one so far (O(1) a tick, no list of times)."""

    __slots__ = ("current", "previous", "started")

    def __init__(self) -> None:
        self.started: float | None = None  # when the current second began
        self.current = 0
        self.previous: int | None = None  # None until a whole second has been counted

    def tick(self, now: float) -> None:
        self._roll(now)
        self.current += 1

    def per_second(self, now: float) -> float | None:
        """None until a whole second has been counted (a process just started knows nothing yet)."""
        self._roll(now)
        if self.previous is None or self.started is None:
            return None
        return (self.previous + self.current) / (1.0 + now - self.started)

    def _roll(self, now: float) -> None:
        if self.started is None:
            self.started = now
        elapsed = now - self.started
        if elapsed >= 1.0:
            self.previous = self.current if elapsed < 2.0 else 0
            self.current = 0
            self.started = now


class Turns:
    """One event loop's handshakes: the slots at work, how many wait for one, how fast they
    finish, and the turns promised to the clients sent away (``come_back_in``)."""

    def __init__(self, limit: int, wait: float) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.limit = limit
        self.wait = wait
        self.waiting = 0
        self.queue_since: float | None = None  # loop time: since when handshakes have been waiting
        self.finished = Rate()
        self.next_turn = 0.0  # loop time: the first turn not promised to a client yet

    def release(self) -> None:
        self.finished.tick(asyncio.get_running_loop().time())
        self.slots.release()

    def queue_too_long(self, now: float) -> bool:
        """Whether a handshake arriving now would wait more than ``wait`` behind the queue,
        at the rate handshakes have been finishing. That rate says what the process can do
        only once a queue has stood for the two seconds it is measured over (an idle
        process finishes none): until then, never."""
        if self.queue_since is None or now - self.queue_since < 2.0:
            return False
        rate = self.finished.per_second(now)
        return rate is not None and self.waiting >= rate * self.wait

    def queue(self, now: float) -> None:
        if self.waiting == 0:
            self.queue_since = now
        self.waiting += 1

    def unqueue(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.queue_since = None

    def come_back_in(self, now: float) -> float:
        """Seconds until the turn promised to a client sent away now: its own turn behind
        those waiting, one turn a handshake at the rate they finish, each turn given once (a
        storm's clients are spread over the time the process needs for them), at most
        COME_BACK_MAX_SECONDS."""
        rate = self.finished.per_second(now) or self.limit / self.wait  # unknown: the slowest it may be
        rate = max(rate, self.limit / self.wait)
        turn = max(now + (self.waiting + 1) / rate, self.next_turn)  # behind those waiting
        self.next_turn = turn + 1.0 / rate
        return min(turn - now, COME_BACK_MAX_SECONDS)


class HandshakeLimit:
    """At most `limit` WebSocket handshakes at work at once in this process; the others
    wait their turn, for up to `wait` seconds, before any database work.

    In a reconnect storm every handshake costs a database hop and a few Redis calls; all at
    once they share the process's one core and every one of them takes the time of all
    (under daphne they passed its 5 s handshake timeout and nobody got in). Taken a few at
    a time each finishes in milliseconds and the queue drains in order. A handshake
    that waited `wait` seconds in vain, or that arrives behind more than `wait` seconds of
    queue, is accepted, told when to come back and closed at once with 1013 (Try Again
    Later): the client reconnects then (or after its backoff, as after any close). Without
    the hint every client sent away came back within a second, to be sent away again: at
    100,000 sockets the processes spent their time on handshakes they refused. (Not 403:
    the contract keeps that for "not signed in" and "foreign origin", which a client must
    not retry.) The consumer calls ``handshake_done()`` once it has accepted or refused:
    the slot's release is in the connection's context (a context variable, not a copy of
    the scope that the connection would carry for its whole life).
    """

    def __init__(self, app, limit: int, wait: float):
        self.app = app
        self.limit = limit
        self.wait = wait
        self.turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or self.limit <= 0:
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        turns = self.turns.get(loop)
        if turns is None:
            turns = self.turns[loop] = Turns(self.limit, self.wait)
        if turns.slots.locked():
            if turns.queue_too_long(loop.time()):
                return await self._send_away(turns, receive, send)
            turns.queue(loop.time())
            try:
                async with asyncio.timeout(self.wait):  # a timer, no task (wait_for made one a handshake)
                    await turns.slots.acquire()
            except TimeoutError:
                waited_in_vain = True
            else:
                waited_in_vain = False
            finally:
                turns.unqueue()
            if waited_in_vain:
                return await self._send_away(turns, receive, send)
        else:
            await turns.slots.acquire()  # free: no timer
        token = _release.set(turns.release)
        try:
            return await self.app(scope, receive, send)
        finally:
            handshake_done()
            _release.reset(token)

    async def _send_away(self, turns: Turns, receive, send) -> None:
        metrics.handshake_refused("try_again_later")
        seconds = turns.come_back_in(asyncio.get_running_loop().time())
        await receive()  # websocket.connect
        # A little jitter of the server's own: the clients of one turn do not come back together.
        await try_again_later(send, after_ms=round(seconds * 1000 * random.uniform(1.0, 1.1)))
