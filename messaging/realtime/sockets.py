"""Writing to one WebSocket: what the ASGI server lets us know of it, and its bounded outbox.

Guarantee: frames reach the server's ``send`` in the order they were written, and a
client that does not read never makes a writer wait. While the server can take a frame
at once it goes straight through (no task, no copy); otherwise it waits in the socket's
``Outbox``, and once more than ``WS_SEND_BACKLOG_MAX_BYTES`` wait the socket is cut off:
the outbox drops them and its owner closes the connection (1011; the client resubscribes
with ``since``), aborting it when the close itself cannot be written.

Known servers: uvicorn (websockets-sansio), daphne (Twisted) and Channels' test
communicator. Under another server every frame goes through the outbox's writer task:
slower, never blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from uvicorn.protocols.utils import ClientDisconnected
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.protocol import State

logger = logging.getLogger(__name__)


class ServerSocket:
    """The ASGI server's side of one WebSocket, as far as writing to it goes.

    ``writable()`` is true when the server's ``send`` returns without waiting (its write
    buffer for the socket has room); ``wait_writable()`` waits until it does; ``abort()``
    drops the TCP connection of a client that does not even read a close frame. This base
    knows nothing of the server: never writable at once, so the outbox's task writes.
    Where ``direct`` is true, ``write_frames(texts)`` writes text frames at once, all of
    them in one write to the connection.
    """

    direct = False

    def writable(self) -> bool:
        return False

    def write_frames(self, texts: list[str] | tuple[str, ...], framed: Framed | None = None) -> None:
        """Write ``texts``; ``framed``, when given, holds the same frames already framed
        (``Framed``), which a socket that can writes as they are."""
        raise NotImplementedError

    async def wait_writable(self) -> None:
        return None

    def abort(self) -> None:
        return None


class Framed:
    """Text frames framed once for every socket that takes them as they are: a server's
    data frames are not masked, so a room's message is the same bytes on every socket
    without an extension (per-message deflate is off). The fan-out makes one per batch
    and hands it to each socket of the room; the bytes are made on first use."""

    __slots__ = ("_data", "texts")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = b"".join(Frame(Opcode.TEXT, text.encode()).serialize(mask=False) for text in self.texts)
        return self._data


class UnblockingSocket(ServerSocket):
    """A ``send`` that never waits: Channels' test communicator (an unbounded queue)."""

    def writable(self) -> bool:
        return True


class SocketClosing(ConnectionError):
    """The WebSocket is closing or closed: nothing more is written to it."""


class UvicornSocket(ServerSocket):
    """uvicorn's websockets-sansio protocol: its ``send`` waits on ``writable``, an event the
    transport clears past its high-water mark and sets again once drained.

    ``write_frames`` does what that ``send`` does for ``websocket.send`` (the same checks,
    websockets' framing, the transport's write) for several frames with one write: a room's
    messages that reach a socket together cost one system call, not one each, and no
    coroutine or ASGI event per frame. Given the frames already framed (``Framed``, made
    once for the room's sockets) and a connection with no extension, it writes those bytes
    after whatever websockets has queued (a pong), without framing them again."""

    direct = True

    def __init__(self, protocol: object) -> None:
        self.protocol = protocol
        # uvicorn keeps the handshake's request and response (their headers: about 3 KiB) for
        # the connection's life, though nothing reads them once the accept is written.
        if getattr(protocol, "handshake_complete", False):
            protocol.request = None
            protocol.response = None

    def write_frames(self, texts: list[str] | tuple[str, ...], framed: Framed | None = None) -> None:
        protocol = self.protocol
        if (
            protocol.disconnected
            or protocol.close_sent
            or not protocol.handshake_complete
            or protocol.initial_response is not None
        ):
            raise SocketClosing("the WebSocket is closing")
        conn = protocol.conn
        if framed is not None and not conn.extensions:
            if conn.state is not State.OPEN:
                raise SocketClosing("the WebSocket is closing")
            queued = conn.data_to_send()
            protocol.transport.write(b"".join((*queued, framed.data)) if queued else framed.data)
            return
        try:
            for text in texts:
                conn.send_text(text.encode())
        except InvalidState as error:
            raise SocketClosing("the WebSocket is closing") from error
        protocol.transport.write(b"".join(conn.data_to_send()))

    def writable(self) -> bool:
        return self.protocol.writable.is_set()

    async def wait_writable(self) -> None:
        await self.protocol.writable.wait()

    def abort(self) -> None:
        self.protocol.transport.abort()


class DaphneSocket(ServerSocket):
    """daphne hands every frame to the socket's Twisted transport, whose buffer has no limit
    and whose ``send`` never waits. Registered as the transport's push producer, this is
    paused when that buffer passes 64 KiB and resumed once it has drained. The producer it
    replaces (daphne's HTTP channel, which stops reading the socket meanwhile) still hears
    every call."""

    def __init__(self, protocol: object) -> None:
        self.protocol = protocol
        transport = protocol.transport
        self.previous = getattr(transport, "producer", None)
        if self.previous is not None:
            transport.unregisterProducer()
        transport.registerProducer(self, True)
        self.resumed = asyncio.Event()
        self.resumed.set()

    def writable(self) -> bool:
        return self.resumed.is_set() and self.protocol.state == self.protocol.STATE_OPEN

    async def wait_writable(self) -> None:
        await self.resumed.wait()

    def abort(self) -> None:
        self.protocol.dropConnection(abort=True)

    # Twisted's IPushProducer
    def pauseProducing(self) -> None:
        self.resumed.clear()
        if self.previous is not None:
            self.previous.pauseProducing()

    def resumeProducing(self) -> None:
        self.resumed.set()
        if self.previous is not None:
            self.previous.resumeProducing()

    def stopProducing(self) -> None:
        self.resumed.set()
        if self.previous is not None:
            self.previous.stopProducing()


def unwrap_send(send: Callable) -> Callable:
    """The server's own ``send`` under Channels' session middleware, whose wrapper only
    passes ``websocket.*`` events up (it saves sessions on HTTP responses)."""
    while (inner := getattr(getattr(send, "__self__", None), "real_send", None)) is not None:
        send = inner
    return send


def client_gone(error: BaseException) -> bool:
    """Whether ``error`` is the ASGI server's answer to a write on a connection its client has
    closed (the spec: an OSError subclass of the server's own; uvicorn's ``ClientDisconnected``,
    the server the site ships with): the client went away, typically from a handshake it gave
    up waiting for. Not a defect, and nothing is left to close."""
    return isinstance(error, ClientDisconnected)


def daphne_protocol(send: Callable) -> object | None:
    """The autobahn protocol behind ``send`` under daphne; None elsewhere. Daphne's ``send``
    is functools.partial(server.handle_reply, protocol)."""
    protocol = next(iter(getattr(unwrap_send(send), "args", ())), None)
    return protocol if hasattr(protocol, "sendCloseFrame") else None


def server_socket(send: Callable) -> ServerSocket:
    """What the server behind ``send`` (an ASGI send, after the handshake) tells of its socket."""
    send = unwrap_send(send)
    owner = getattr(send, "__self__", None)
    if isinstance(owner, asyncio.Queue):
        return UnblockingSocket()
    if type(owner).__module__ == "uvicorn.protocols.websockets.websockets_sansio_impl":
        return UvicornSocket(owner)
    protocol = daphne_protocol(send)
    if protocol is not None and getattr(protocol, "transport", None) is not None:
        return DaphneSocket(protocol)
    return ServerSocket()


def server_inbox(receive: Callable) -> asyncio.Queue | None:
    """The queue the server's ``receive`` reads the socket's frames from, when it has one we
    know of: uvicorn's websockets-sansio protocol, daphne and Channels' test communicator
    (both hand the application ``queue.get``). Anything put there is what ``receive``
    returns next, after the frames already in it."""
    owner = getattr(receive, "__self__", None)
    if isinstance(owner, asyncio.Queue) and receive.__name__ == "get":
        return owner
    if type(owner).__module__ == "uvicorn.protocols.websockets.websockets_sansio_impl":
        queue = getattr(owner, "queue", None)
        return queue if isinstance(queue, asyncio.Queue) else None
    return None


def send_close_below_autobahn(protocol: object | None, code: int | None) -> bool:
    """Autobahn (under daphne) refuses to send a close code other than 1000 or 3000-4999:
    it raises, and daphne answers the crash with 1011 and a traceback. The contract's
    1008, 1009, 1011 and 1013 go out through its lower-level call, as daphne's own 1011
    does. False when there is no daphne protocol or the code is one autobahn allows."""
    if protocol is None or code in (None, 1000) or 3000 <= code <= 4999:
        return False
    protocol.sendCloseFrame(code=code, isReply=False)
    return True


class Outbox:
    """Frames on their way to one client: in the order written, bounded.

    A frame goes straight to the server's ``send`` while the socket takes it and nothing
    waits before it; otherwise it waits here for a writer task that sends as the socket
    drains. When more than ``limit`` bytes (UTF-8) wait, the outbox closes, drops them and
    calls ``on_overflow(waiting)`` (its owner cuts the socket off).
    """

    __slots__ = ("closed", "frames", "limit", "on_overflow", "send", "sending", "size", "socket", "writer")

    def __init__(self, send: Callable, socket: ServerSocket, *, limit: int, on_overflow: Callable[[int], None]) -> None:
        self.send = unwrap_send(send)
        self.socket = socket
        self.limit = limit
        self.on_overflow = on_overflow
        self.frames: deque[tuple[str, int]] | None = None  # (text, its size in bytes); made when needed
        self.size = 0
        self.sending = False
        self.writer: asyncio.Task | None = None
        self.closed = False

    async def write(self, text: str) -> None:
        if self.closed:
            return
        if self.sending or self.writer is not None or not self.socket.writable():
            self._queue(text)
            return
        if self.socket.direct:
            try:
                self.socket.write_frames((text,))
            except Exception as error:  # the client is gone; its consumer hears the disconnect
                self._lost(error)
            return
        self.sending = True
        try:
            await self.send({"type": "websocket.send", "text": text})
        except Exception as error:  # the client is gone; its consumer hears the disconnect
            self._lost(error)
        finally:
            self.sending = False
        if self.frames and self.writer is None:
            self._start_writer()

    def write_many(self, texts: list[str], framed: Framed | None = None) -> None:
        """``write`` each of ``texts``, in order, without waiting: only for a server that
        takes frames directly (``ServerSocket.direct``), in one write to the connection
        when nothing waits here, else queued. ``framed``: the same frames, framed once for
        every socket of a room."""
        assert self.socket.direct
        if self.closed or not texts:
            return
        if self.writer is None and self.socket.writable():
            try:
                self.socket.write_frames(texts, framed)
            except Exception as error:  # the client is gone; its consumer hears the disconnect
                self._lost(error)
            return
        for text in texts:
            self._queue(text)
            if self.closed:
                return

    def _queue(self, text: str) -> None:
        size = len(text) if text.isascii() else len(text.encode())
        if self.frames is None:
            self.frames = deque()
        self.frames.append((text, size))
        self.size += size
        if self.size > self.limit:
            waiting = self.size
            self.close()
            self.on_overflow(waiting)
        elif self.writer is None and not self.sending:
            self._start_writer()

    def _start_writer(self) -> None:
        self.writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.frames and not self.closed:
                await self.socket.wait_writable()
                if self.closed or not self.frames:
                    break
                text, size = self.frames.popleft()
                self.size -= size
                self.sending = True
                try:
                    await self.send({"type": "websocket.send", "text": text})
                finally:
                    self.sending = False
        except Exception as error:
            self._lost(error)
        finally:
            self.writer = None

    async def flush(self) -> None:
        """Wait until nothing waits here (the caller bounds the wait)."""
        writer = self.writer
        if writer is not None:
            await asyncio.wait({writer})

    def _lost(self, error: Exception) -> None:
        logger.debug("a WebSocket write failed: %r", error)
        self.close()

    def close(self) -> None:
        """Write nothing more; drop what waits."""
        self.closed = True
        self.frames = None
        self.size = 0
        writer = self.writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
