"""A web process that is told to stop (SIGTERM) sends its sockets elsewhere a few at a time, none mid-send.

Guarantee: from SIGTERM on, the process takes no new connection (uvicorn's listening sockets
are closed at once; a handshake that got in before is drained like the others). Each open
socket is sent ``{"type": "reconnect", "after_ms": n}`` (n random in 0..WS_RECONNECT_JITTER_MS)
and closed with 1012 (Service Restart) at a moment of its own: the sockets, in random order,
spread evenly over WS_DRAIN_SECONDS, so that their clients arrive at the other processes a
few at a time, not all at once. A socket is closed only after every frame it received
before its moment is handled: the drain is an event in the socket's own inbox, behind those
frames, so a ``send`` being stored is acked (and its ack written) before the close. When the
last socket is closed (or WS_DRAIN_SECONDS plus ``CLOSE_GRACE_SECONDS`` have passed), the
process lingers WS_DRAIN_LINGER_SECONDS (0 by default), alive and still not listening: a
connect to its port is refused at once by the kernel, so a proxy that has not yet forgotten
its address (nginx re-resolves every few seconds) tries the next replica at once instead of
waiting out its connect timeout on an address that answers nothing. A WebSocket that still
gets in meanwhile (over a connection opened before SIGTERM) is drained at once. Then
uvicorn's own shutdown runs: it closes what is left at once (1012, HTTP keep-alive
connections) and waits for running tasks up to ``--timeout-graceful-shutdown``. From SIGTERM
to exit: WS_DRAIN_SECONDS + ``CLOSE_GRACE_SECONDS`` + WS_DRAIN_LINGER_SECONDS +
``--timeout-graceful-shutdown`` at most.

How: uvicorn (0.54) on SIGTERM closes every WebSocket at once (1012, without waiting for
what its consumer is doing) and only then sends the ASGI lifespan ``shutdown``, too late for
a drain. So the lifespan ``startup`` (``--lifespan on``; uvicorn has installed its signal
handlers by then) puts a SIGTERM handler in front of uvicorn's: it starts the drain and, once
it is over (and the linger with it), calls uvicorn's handler, which shuts down as before.
A second SIGTERM, or a SIGINT (Ctrl-C), goes to uvicorn at once, during the drain or the
linger. Under a server without lifespan, or one that does not hand the consumer its inbox
(messaging.realtime.sockets.server_inbox), nothing drains (nor lingers): the server's own
shutdown is all there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import threading
from collections.abc import Callable

from django.conf import settings

from protocol.events import SOCKET_DRAIN

logger = logging.getLogger(__name__)

# After the last socket's moment, how long the drain waits for the closes it asked for (each
# flushes its outbox for at most messaging.realtime.base.CLOSE_WAIT_SECONDS, then closes).
CLOSE_GRACE_SECONDS = 2.0
SERVICE_RESTART = 1012  # RFC 6455 close code registry: the server is restarting


class Drain:
    """This process's open sockets, and its drain once SIGTERM has come."""

    def __init__(self) -> None:
        self.sockets: dict[object, asyncio.Queue] = {}  # consumer -> its inbox
        self.draining = False
        self.task: asyncio.Task | None = None

    def opened(self, consumer: object, inbox: asyncio.Queue | None) -> None:
        if inbox is None:
            return  # a server we do not know: its own shutdown closes the socket
        self.sockets[consumer] = inbox
        if self.draining:  # it got in before the listening socket closed: out it goes too
            inbox.put_nowait(SOCKET_DRAIN)

    def closed(self, consumer: object) -> None:
        self.sockets.pop(consumer, None)

    async def run(self, seconds: float) -> None:
        """Ask every socket to leave, at moments spread evenly over ``seconds``, in random
        order; then wait (``CLOSE_GRACE_SECONDS`` at most) until they have."""
        self.draining = True
        loop = asyncio.get_running_loop()
        order = list(self.sockets)
        random.shuffle(order)
        count = len(order)
        logger.warning("Draining %d WebSockets over %.1f s before shutting down", count, seconds)
        start = loop.time()
        for index, consumer in enumerate(order):
            delay = start + seconds * index / count - loop.time()
            if delay > 0.002:
                await asyncio.sleep(delay)
            inbox = self.sockets.get(consumer)
            if inbox is not None:
                inbox.put_nowait(SOCKET_DRAIN)
        deadline = start + seconds + CLOSE_GRACE_SECONDS
        while self.sockets and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.sockets:
            logger.warning("%d WebSockets still open after the drain: the server closes them", len(self.sockets))


_drain = Drain()


def sockets() -> Drain:
    """The process's drain (one process, one event loop, one SIGTERM)."""
    return _drain


def reconnect_after_ms() -> int:
    """The wait a `reconnect` frame asks of its client: random, so that even the clients of
    sockets closed together come back apart."""
    return random.randint(0, max(0, settings.WS_RECONNECT_JITTER_MS))


async def linger(seconds: float) -> None:
    """Stay alive, not listening, ``seconds`` more: until the proxies have let go of this
    process's address (see the module's docstring)."""
    if seconds > 0:
        logger.warning("Drained; lingering %.1f s, not listening, before shutting down", seconds)
        await asyncio.sleep(seconds)


def _stop_listening(handler: object) -> None:
    """Close the listening sockets of the uvicorn server whose SIGTERM handler is ``handler``
    (its bound ``Server.handle_exit``): new connections go to the other processes (a proxy
    tries the next one on a refused connection). uvicorn closes them again at its shutdown,
    which it allows."""
    server = getattr(handler, "__self__", None)
    if not type(server).__module__.startswith("uvicorn."):
        return
    for listener in getattr(server, "servers", ()):
        listener.close()


def _hand_over(previous: object, sig: int, frame: object) -> None:
    """Let the signal do what it did before the drain was put in front of it."""
    if callable(previous):
        previous(sig, frame)
        return
    signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    signal.raise_signal(sig)


def install_sigterm_drain(loop: asyncio.AbstractEventLoop) -> bool:
    """Put the drain in front of the current SIGTERM handler (uvicorn's). False where signals
    cannot be handled (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)

    async def drain_then_hand_over() -> None:
        try:
            await _drain.run(settings.WS_DRAIN_SECONDS)
        except Exception:
            logger.exception("The drain failed; shutting down at once")
        else:
            await linger(settings.WS_DRAIN_LINGER_SECONDS)
        _hand_over(previous, signal.SIGTERM, None)

    def start() -> None:
        with contextlib.suppress(Exception):
            _stop_listening(previous)
        _drain.task = loop.create_task(drain_then_hand_over(), name="websocket drain")

    def on_sigterm(sig: int, frame: object) -> None:
        if _drain.task is not None or _drain.draining:
            _hand_over(previous, sig, frame)  # a second SIGTERM: no more waiting
            return
        _drain.draining = True
        loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True


async def lifespan(scope: dict, receive: Callable, send: Callable) -> None:
    """The ASGI lifespan protocol (``--lifespan on``): at startup, the drain goes in front of
    the server's SIGTERM handler."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            install_sigterm_drain(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
