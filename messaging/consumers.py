"""The WebSocket endpoint `/ws/`: one connection per tab, any number of rooms.

The consumer authenticates, parses, dispatches to a service and sends; rights are
checked once at subscribe and cached for the subscription (changes arrive on the
user's own group). Delivery is in `seq` order per room: an event that arrives
ahead of a missing one waits briefly, then the gap is filled from the Redis buffer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from redis.exceptions import RedisError

from messaging.events import room_group, user_group
from messaging.selectors import messages_between, room_counters
from messaging.services import message_send
from messaging.wire import encode, message_wire
from rooms.services import RoomAccess, RoomBanned, RoomNotFound, room_access_for_subscriber

logger = logging.getLogger(__name__)

FRAME_MAX_BYTES = 64 * 1024
# How long an event that arrived ahead of a missing one waits for it before the
# gap is read from the buffer.
GAP_WAIT_SECONDS = 0.2
# Events held for one room while a gap is open; past this the socket is closed
# and the client resubscribes with `since`.
PENDING_MAX = 2000
MAX_INT = 2**53


class ClientError(Exception):
    def __init__(self, code: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass
class Subscription:
    access: RoomAccess
    last_seq: int
    pending: dict[int, str] = field(default_factory=dict)
    gap_task: asyncio.Task | None = None


def _required_str(frame: dict, key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise ClientError("bad_request", f"`{key}` must be a non-empty string.")
    return value


def _optional_int(frame: dict, key: str) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INT:
        raise ClientError("bad_request", f"`{key}` must be null or a non-negative integer.")
    return value


def _client_id(frame: dict) -> str:
    raw = _required_str(frame, "client_id")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ClientError("bad_request", "`client_id` must be a UUID.") from None


def _body(frame: dict) -> str:
    body = frame.get("body")
    if not isinstance(body, str):
        raise ClientError("bad_request", "`body` must be a string.")
    body = body.strip()
    if not body:
        raise ClientError("bad_request", "The message is empty.")
    if len(body) > settings.MESSAGE_MAX_LENGTH:
        raise ClientError("too_large", f"A message has at most {settings.MESSAGE_MAX_LENGTH} characters.")
    if "\x00" in body:
        raise ClientError("bad_request", "The message contains a NUL character.")
    return body


class RoomsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.user = user
        self.subscriptions: dict[str, Subscription] = {}
        self.slug_by_room_id: dict[int, str] = {}
        self.handlers: dict[str, Callable[[dict, object], Awaitable[None]]] = {
            "subscribe": self.handle_subscribe,
            "unsubscribe": self.handle_unsubscribe,
            "send": self.handle_send,
            "ping": self.handle_ping,
        }
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "subscriptions"):
            return
        for slug in list(self.subscriptions):
            await self._end_subscription(slug)
        await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)

    # --- Frames from the client ------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > FRAME_MAX_BYTES:
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
        frame_type = frame.get("type")
        if not isinstance(frame_type, str):
            await self._send_error(ClientError("bad_request", "The frame has no `type`."), ref)
            return
        handler = self.handlers.get(frame_type)
        if handler is None:
            await self._send_error(ClientError("unknown_type", f"Unknown frame type {frame_type[:40]!r}."), ref)
            return
        try:
            await handler(frame, ref)
        except ClientError as error:
            await self._send_error(error, ref)
        except RedisError:
            logger.exception("Redis failed while handling %s", frame_type)
            await self._send_error(ClientError("unavailable", "A backing service failed; retry."), ref)

    async def handle_ping(self, frame: dict, ref: object) -> None:
        # Re-joining refreshes the layer's group expiry for long-lived sockets.
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        for sub in self.subscriptions.values():
            await self.channel_layer.group_add(room_group(sub.access.room_id), self.channel_name)
        await self._send_frame({"type": "pong"}, ref)

    async def handle_subscribe(self, frame: dict, ref: object) -> None:
        slug = _required_str(frame, "room")
        since = _optional_int(frame, "since")
        _optional_int(frame, "rev")
        try:
            access = await database_sync_to_async(room_access_for_subscriber)(slug=slug, user=self.user)
        except RoomNotFound:
            raise ClientError("not_found", "No such room.") from None
        except RoomBanned:
            raise ClientError("banned", "You are banned from this room.") from None
        if slug in self.subscriptions:
            await self._end_subscription(slug)
        # Join the group before reading the counters: an event for a later seq
        # waits in the inbox and nothing falls between the replay and the stream.
        await self.channel_layer.group_add(room_group(access.room_id), self.channel_name)
        latest, rev = await database_sync_to_async(room_counters)(room_id=access.room_id)
        replay: list = []
        recovered = True
        if since is not None:
            if since > latest or latest - since > settings.MESSAGE_REPLAY_LIMIT:
                recovered = False
            else:
                replay = await database_sync_to_async(messages_between)(
                    room_id=access.room_id, after=since, upto=latest
                )
        self.subscriptions[slug] = Subscription(access=access, last_seq=latest)
        self.slug_by_room_id[access.room_id] = slug
        await self._send_frame(
            {"type": "subscribed", "room": slug, "seq": latest, "rev": rev, "recovered": recovered}, ref
        )
        for record, state in replay:
            await self.send(text_data=encode(message_wire(record, room=slug, state=state)))

    async def handle_unsubscribe(self, frame: dict, ref: object) -> None:
        slug = _required_str(frame, "room")
        if slug not in self.subscriptions:
            raise ClientError("not_subscribed", "You are not subscribed to this room.")
        await self._end_subscription(slug)
        await self._send_frame({"type": "unsubscribed", "room": slug}, ref)

    async def handle_send(self, frame: dict, ref: object) -> None:
        slug = _required_str(frame, "room")
        body = _body(frame)
        client_id = _client_id(frame)
        sub = self.subscriptions.get(slug)
        if sub is None:
            raise ClientError("not_subscribed", "Subscribe to the room before sending.")
        access = sub.access
        if access.locked:
            raise ClientError("room_locked", "The room is locked.")
        if access.is_muted():
            raise ClientError("muted", "You are muted in this room.", until=access.muted_until.isoformat())
        result = await message_send(
            room_id=access.room_id,
            room_slug=slug,
            author_id=self.user.pk,
            author_username=self.user.get_username(),
            body=body,
            client_id=client_id,
        )
        await self._send_frame({"type": "ack", "room": slug, "client_id": client_id, "seq": result.seq}, ref)

    # --- Events from the channel layer ----------------------------------------

    async def room_message(self, event: dict) -> None:
        slug = self.slug_by_room_id.get(event["room_id"])
        sub = self.subscriptions.get(slug) if slug else None
        if sub is None:
            return
        seq = event["seq"]
        if seq <= sub.last_seq:
            return
        if seq == sub.last_seq + 1 and not sub.pending:
            sub.last_seq = seq
            await self.send(text_data=event["frame"])
            return
        sub.pending[seq] = event["frame"]
        if len(sub.pending) > PENDING_MAX:
            await self.close(code=1011)
            return
        await self._flush_pending(sub)
        if sub.pending and sub.gap_task is None:
            sub.gap_task = asyncio.create_task(self._fill_gap(slug, sub))

    async def user_kicked(self, event: dict) -> None:
        slug = self.slug_by_room_id.get(event["room_id"])
        if slug is None or slug not in self.subscriptions:
            return
        await self._end_subscription(slug)
        await self.send(text_data=encode({"type": "kicked", "room": slug, "reason": event["reason"]}))

    async def room_state(self, event: dict) -> None:
        slug = self.slug_by_room_id.get(event["room_id"])
        sub = self.subscriptions.get(slug) if slug else None
        if sub is not None:
            sub.access = RoomAccess(
                room_id=sub.access.room_id,
                slug=sub.access.slug,
                role=sub.access.role,
                locked=event["locked"],
                muted_until=sub.access.muted_until,
            )

    # --- Helpers ---------------------------------------------------------------

    async def _flush_pending(self, sub: Subscription) -> None:
        frames = []
        while sub.last_seq + 1 in sub.pending:
            sub.last_seq += 1
            frames.append(sub.pending.pop(sub.last_seq))
        for stale in [s for s in sub.pending if s <= sub.last_seq]:
            del sub.pending[stale]
        for text in frames:
            await self.send(text_data=text)

    async def _fill_gap(self, slug: str, sub: Subscription) -> None:
        try:
            await asyncio.sleep(GAP_WAIT_SECONDS)
            while sub.pending and self.subscriptions.get(slug) is sub:
                first_waiting = min(sub.pending)
                if first_waiting == sub.last_seq + 1:
                    await self._flush_pending(sub)
                    continue
                missing = await database_sync_to_async(messages_between)(
                    room_id=sub.access.room_id, after=sub.last_seq, upto=first_waiting - 1
                )
                frames = []
                for record, state in missing:
                    if record["seq"] > sub.last_seq:
                        sub.last_seq = record["seq"]
                        frames.append(encode(message_wire(record, room=slug, state=state)))
                # Whatever is neither in the buffer nor in PostgreSQL is gone for good:
                # skip it rather than stall the room.
                sub.last_seq = max(sub.last_seq, first_waiting - 1)
                for text in frames:
                    await self.send(text_data=text)
                await self._flush_pending(sub)
        except RedisError:
            logger.exception("Could not fill a gap in room %s; closing so the client resyncs", slug)
            await self.close(code=1011)
        finally:
            sub.gap_task = None

    async def _end_subscription(self, slug: str) -> None:
        sub = self.subscriptions.pop(slug, None)
        if sub is None:
            return
        self.slug_by_room_id.pop(sub.access.room_id, None)
        if sub.gap_task is not None:
            sub.gap_task.cancel()
        await self.channel_layer.group_discard(room_group(sub.access.room_id), self.channel_name)

    async def _send_frame(self, frame: dict, ref: object) -> None:
        if ref is not None:
            frame["ref"] = ref
        await self.send(text_data=encode(frame))

    async def _send_error(self, error: ClientError, ref: object) -> None:
        frame = {"type": "error", "code": error.code, "detail": error.detail, **error.extra}
        await self._send_frame(frame, ref)
