"""The ASGI plumbing of the ``/ws/`` consumer: what Channels' ``AsyncWebsocketConsumer`` does, faster, and bounded.

``SocketConsumer`` replaces Channels' receive loop with one read of the server's own inbox
(``__call__``), skips its per-event ``close_old_connections`` (``dispatch``), reads and checks
each client frame before it reaches a handler (``receive``: its size, JSON, ``ref`` and
``type``; a handler's refusal or failure answered with an ``error`` frame), writes every
frame through the socket's bounded outbox (``send``), and closes once, working around
daphne's and autobahn's ways (``close``). It knows no room: a subclass names its handlers
(``frame_handlers``: frame type -> method) and lets go of what it holds (``release_here``,
at once, then ``release_in_redis``) however the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from messaging import frames, metrics
from messaging.frames import ClientError
from messaging.realtime import drain, online
from messaging.realtime.handshakes import handshake_done, try_again_later
from messaging.realtime.sockets import (
    Outbox,
    client_gone,
    daphne_protocol,
    send_close_below_autobahn,
    server_inbox,
)
from messaging.services import (
    ActionRefused,
)
from protocol.wire import (
    encode,
    error_frame,
    reconnect_frame,
)

logger = logging.getLogger(__name__)

# How long a cut-off socket's close frame may wait behind what its client does not read.
CLOSE_WAIT_SECONDS = 1.0


class SocketConsumer(AsyncWebsocketConsumer):
    outbox: Outbox | None = None
    refusals: deque[float] | None = None  # when frames were refused lately (made at the first)
    refused: str | None = None  # why the handshake was refused after the accept (a metrics outcome)
    cut_off = False
    closing = False
    logged_out = False
    # Frame type -> the method that handles it (``handler(self, frame, ref)``).
    frame_handlers: dict[str, Callable[..., Awaitable[None]]] = {}

    def release_here(self) -> object:
        """Let go of what this process holds for the socket, at once (no await); returns
        what ``release_in_redis`` then lets go of."""
        return None

    async def release_in_redis(self, held: object) -> None:
        """Let go of what Redis holds for the socket (``held``: from ``release_here``)."""

    def detach_feeds(self) -> None:
        """The socket is cut off: stop writing the rooms' messages to it."""

    async def __call__(self, scope, receive, send) -> None:
        """Channels' ``AsyncConsumer.__call__``, reading one inbox where the server has one.

        Channels waits on two tasks per socket (the server's ``receive`` and the channel
        layer's queue for the consumer's channel) and makes a new task and an
        ``asyncio.wait`` per event. Here the layer puts the consumer's events into the
        server's own queue of the socket's frames (messaging.realtime.sockets.server_inbox), and one
        loop reads both in the order they came: no task, queue or copy of an event per
        socket. Under a server we do not know, Channels' way."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        inbox = server_inbox(receive)
        drain.sockets().opened(self, inbox)  # SIGTERM: it is told to reconnect elsewhere
        try:
            if inbox is not None:
                self.channel_layer.deliver_to(self.channel_name, inbox)
                dispatch = self.dispatch
                while True:
                    await dispatch(await receive())
            else:
                self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
                await await_many_dispatch([receive, self.channel_receive], self.dispatch)
        except StopConsumer:
            pass
        except RedisError as error:
            # The channel layer (or another Redis call outside a frame's handling) failed:
            # events for this socket may be lost, so close it; the client resubscribes
            # with `since`. During the handshake (a stale connection after Redis restarted),
            # it is answered 1013, Try Again Later: not the 403 of a refusal.
            logger.warning("Redis failed under a WebSocket connection; closing it: %s", error)
            with contextlib.suppress(Exception):
                if self.outbox is None and not self.closing:
                    self.closing = True
                    await try_again_later(self.base_send)
                else:
                    await self.close(code=1011)
        except Exception as error:
            if client_gone(error):
                # The client left while the server wrote to it (in a reconnect storm, clients
                # that gave up on their handshake): nothing to close. Formatting a traceback
                # for each took a tenth of a surviving process's CPU in the scale run's storm.
                logger.debug("The client of a WebSocket connection went away")
                return
            # A defect in an event's handler (a frame's is answered in `receive`): close, and
            # let go of everything below; the client reconnects and resubscribes with `since`.
            logger.exception("A WebSocket connection failed; closing it")
            with contextlib.suppress(Exception):
                await self.close(code=1011)
        finally:
            # However the connection ended (`disconnect` did this already when it ran): first
            # what this process holds, at once, then what Redis holds (the presence entries
            # left would expire anyway once the keeper stops refreshing them).
            drain.sockets().closed(self)
            held = self.release_here()
            self.channel_layer.drop_channel(self.channel_name)
            if self.outbox is not None:
                self.outbox.close()
            metrics.socket_ended(self)
            online.connection_closed(channel=self.channel_name)
            with contextlib.suppress(Exception):
                await self.release_in_redis(held)

    async def dispatch(self, message: dict) -> None:
        # Channels' dispatch first runs close_old_connections in the process's one sync thread:
        # a thread hop for every event of every socket, which the database calls of the
        # handshakes then queue behind (a reconnect storm stalled on it). Every database
        # call here goes through database_sync_to_async, which closes old connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict) -> None:
        try:
            await super().websocket_connect(message)
        finally:
            # Accepted or refused: let the next handshake in (pubsub_site.asgi.HandshakeLimit).
            handshake_done()
            metrics.handshake_finished(self)

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels' version ends with close_old_connections in the process's one database
        # thread: a hop for every socket that closes, which the first subscribes' joins (and
        # in a reconnect storm, every other database call) then queue behind. The consumer
        # joins no group through ``self.groups``; database_sync_to_async closes old
        # connections itself around every call.
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def socket_drain(self, event: dict) -> None:
        """The process is shutting down (messaging.realtime.drain): after the frames handled
        before this event (an ack included), tell the client to reconnect, and close (1012)."""
        if self.closing:
            return
        if self.outbox is not None:
            await self.send(text_data=encode(reconnect_frame(after_ms=drain.reconnect_after_ms())))
        await self.close(code=drain.SERVICE_RESTART)

    async def _refuse(self, error: ClientError, *, code: int) -> None:
        """Refuse the connection in a way its client can read: accepted, an `error` frame
        saying why, closed with ``code`` (a refusal before the accept is an HTTP 403)."""
        self.refused = error.code
        await self.accept()
        await self._send_error(error, None)
        await self.close(code=code)

    # --- Frames from the client ------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            # Read after the close was decided (a drain, a cut-off): never handled, so never
            # stored without its ack; the client sends it again on its next connection.
            return
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > settings.WS_FRAME_MAX_BYTES:
            await self.close(code=1009)
            return
        if bytes_data is not None:
            await self._send_error(ClientError("bad_request", "Frames are JSON text."), None)
            return
        try:
            frame = orjson.loads(text_data or "")
        except orjson.JSONDecodeError:
            await self._send_error(ClientError("bad_request", "The frame is not valid JSON."), None)
            return
        if not isinstance(frame, dict):
            await self._send_error(ClientError("bad_request", "A frame is a JSON object."), None)
            return
        ref = frame.get("ref")
        if not frames.valid_ref(ref):
            await self._send_error(ClientError("bad_request", frames.REF_RULE), None)
            return
        frame_type = frame.get("type")
        if not isinstance(frame_type, str):
            await self._send_error(ClientError("bad_request", "The frame has no `type`."), ref)
            return
        if self.logged_out:
            await self._send_error(ClientError("forbidden", "You have logged out; sign in again."), ref)
            await self.close(code=1008)
            return
        metrics.frame_received(frame_type)
        handler = self.frame_handlers.get(frame_type)
        if handler is None:
            await self._send_error(ClientError("unknown_type", f"Unknown frame type {frame_type[:40]!r}."), ref)
            return
        try:
            await handler(self, frame, ref)
        except (ClientError, ActionRefused) as error:  # the frame's fault, or a service's refusal
            await self._send_error(error, ref)
            if error.code == "rate_limited" and self._flooding():
                await self.close(code=1008)
        except (RedisError, DatabaseError) as error:
            logger.warning("A backing service failed while handling %s: %r", frame_type, error)
            await self._send_error(ClientError("unavailable", "A backing service failed; retry."), ref)
        except Exception:
            # A defect: the client is told, the log has the traceback, the socket goes on
            # (a subscribe that failed halfway has undone itself).
            logger.exception("Handling a %r frame failed", frame_type)
            await self._send_error(ClientError("internal_error", "The server failed to handle this frame."), ref)

    def _flooding(self) -> bool:
        """True when this connection keeps going past its limits."""
        now = time.monotonic()
        if self.refusals is None:
            self.refusals = deque()
        self.refusals.append(now)
        while self.refusals and self.refusals[0] < now - settings.WS_FLOOD_WINDOW:
            self.refusals.popleft()
        return len(self.refusals) >= settings.WS_FLOOD_REFUSALS

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """Every frame to the client goes through its outbox, after the room messages
        the fan-out wrote there: one order, one bound."""
        if self.outbox is not None and text_data is not None and not close:
            await self.outbox.write(text_data)
        else:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    def _overflowed(self, waiting: int) -> None:
        """The client does not read: cut it off (it resubscribes with `since` when it is back)."""
        self.cut_off = True
        logger.warning("Closing a WebSocket whose client does not read: %d bytes wait", waiting)
        self.detach_feeds()
        asyncio.get_running_loop().create_task(self.close(code=1011))

    def _order_lost(self) -> None:
        """The room's fan-out could not keep its order for this socket: resync the client."""
        asyncio.get_running_loop().create_task(self.close(code=1011))

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.closing:
            return  # a second close (a frame over 64 KiB after another): the server would raise
        self.closing = True
        metrics.server_closed(self, code)
        if self.outbox is not None:
            if not self.cut_off:  # what was written before the close goes out before it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outbox.flush(), CLOSE_WAIT_SECONDS)
            self.outbox.close()
        protocol = daphne_protocol(self.base_send)
        if protocol is not None:
            if protocol.state != protocol.STATE_OPEN:
                return  # closing or closed already
            if send_close_below_autobahn(protocol, code):
                return
        try:
            # The close frame waits behind whatever the client has not read: when it cannot
            # be written in time, the TCP connection is dropped.
            await asyncio.wait_for(super().close(code=code, reason=reason), CLOSE_WAIT_SECONDS)
        except TimeoutError:
            if self.outbox is not None:
                self.outbox.socket.abort()

    async def _send_texts(self, texts: list[str]) -> None:
        """``send`` each of ``texts``, in order (in one write when the server allows it)."""
        if self.outbox is not None and self.outbox.socket.direct:
            self.outbox.write_many(texts)
            return
        for text in texts:
            await self.send(text_data=text)

    async def _send_frame(self, frame: dict, ref: object) -> None:
        if ref is not None:
            frame["ref"] = ref
        await self.send(text_data=encode(frame))

    async def _send_error(self, error: ClientError | ActionRefused, ref: object) -> None:
        metrics.error_sent(error.code)
        frame = error_frame(code=error.code, detail=error.detail, **error.extra)
        await self._send_frame(frame, ref)
