"""The WebSocket endpoint `/ws/`: one connection per tab, any number of rooms; a switch over frame types.

The consumer authenticates, parses, dispatches to a service and sends; rights are
checked once at subscribe and cached for the subscription (changes arrive on the
user's own group). A room's messages do not pass through the consumer: the process's
fan-out for the room (messaging.realtime.fanout) orders them once and writes them to every
subscribed socket's outbox (messaging.realtime.sockets), which every other frame of the
consumer goes through too, in order, bounded.

Whatever a frame or an event does, the socket lets go of what it holds: a handler's
exception is answered with an `error` frame (a frame's) or closes the socket (1011, an
event's), and the socket's fan-out feeds, groups, presence entries and metrics are released
in a ``finally`` however the connection ends. What one socket may hold and ask is bounded:
sockets per user and process, subscriptions per socket, subscribe frames per window, and a
subscribe's replay of missed changes (``CHANGE_REPLAY_LIMIT`` revisions).

The consumer is three parts: the ASGI plumbing (messaging.realtime.base.SocketConsumer),
the subscriptions with the subscribe order (messaging.realtime.subscriptions) and the layer
events (messaging.realtime.layer_events); this module is the connection and the frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError

from attachments.services import ClaimRefused, attachments_claim, attachments_mark_sent
from messaging import frames, moderation
from messaging.frames import ClientError
from messaging.models import CLAP_CAP
from messaging.pins import room_message_pin_by_ids
from messaging.posting import check_may_post, message_post
from messaging.previews import message_preview_remove
from messaging.reactions import emoji_or_refuse, message_react
from messaging.realtime import online, throttle
from messaging.realtime.base import SocketConsumer
from messaging.realtime.layer_events import LayerEvents
from messaging.realtime.sockets import Outbox, server_socket
from messaging.realtime.subscriptions import Subscription, Subscriptions
from messaging.services import (
    ActionRefused,
    NotTheAuthor,
    message_clap,
    message_delete,
    message_edit,
    message_mark_read,
    typing_announce,
)
from protocol.events import activity_group, session_fingerprint, user_group
from protocol.wire import (
    ack_frame,
    claps_wire,
    pong_frame,
    reactions_wire,
    user_wire,
)

logger = logging.getLogger(__name__)


class RoomsConsumer(LayerEvents, Subscriptions, SocketConsumer):
    # An API token's grant when the socket was opened with one (pubsub_site.wsauth): its
    # scopes are checked at each frame that needs one, its rooms at subscribe.
    grant = None
    bot = False  # the user is a bot account: `author.bot` on their messages

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.user_id = user.pk
        cap = settings.WS_MAX_SOCKETS_PER_USER
        if cap and online.sockets_of(user_id=user.pk) >= cap:
            detail = f"At most {cap} connections per user; close a tab and retry."
            await self._refuse(ClientError("too_many_sockets", detail), code=1008)
            return
        # Counted at once, so that the handshakes of one user that run together see each other.
        online.connection_opened(user_id=self.user_id, channel=self.channel_name)
        self.grant = self.scope.get("grant")
        self.bot = self.grant is not None and self.grant.bot
        self.user_json = user_wire(user.pk, user.get_username(), bot=self.bot)
        self.session = session_fingerprint(getattr(self.scope.get("session"), "session_key", None))
        self.subscriptions: dict[str, Subscription] = {}
        self.slug_by_room_id: dict[int, str] = {}
        # Rooms whose activity (unread counts) this connection follows: id -> slug.
        memberships = self.scope["memberships"]  # read with the user (pubsub_site.wsauth)
        # What the socket needs of them is read: the session, the user and the memberships
        # are not kept for the connection's life (this scope is the consumer's own copy).
        for key in ("session", "user", "memberships"):
            self.scope.pop(key, None)
        self.activity_rooms = {room_id: slug for room_id, (slug, _) in memberships.items()}
        # PostgreSQL's read markers; a newer one may be in Redis until it is persisted, and
        # it is read from there at the room's first activity (room_activity).
        self.read_markers = {room_id: last_read for room_id, (_, last_read) in memberships.items()}
        self.markers_checked: set[int] | None = None  # made at the first room activity (an empty set is 216 bytes)
        self.latest_seen: dict[int, int] = {}
        await self.channel_layer.group_add_all(
            [user_group(self.user_id), *map(activity_group, self.activity_rooms)], self.channel_name
        )
        await self.accept()
        self.outbox = Outbox(
            self.base_send,
            server_socket(self.base_send),
            limit=settings.WS_SEND_BACKLOG_MAX_BYTES,
            on_overflow=self._overflowed,
        )

    async def disconnect(self, code: int) -> None:
        await self._leave(self._drop_subscriptions())

    def release_here(self) -> list[Subscription]:
        return self._drop_subscriptions()

    async def release_in_redis(self, held: list[Subscription]) -> None:
        await self._leave(held)

    # --- Frames from the client (one handler per type: messaging.frames.FRAME_TYPES) ---

    async def handle_ping(self, frame: dict, ref: object) -> None:
        await self._send_frame(pong_frame(), ref)

    async def handle_send(self, frame: dict, ref: object) -> None:
        frames.required_str(frame, "room")
        attachment_ids = frames.attachment_ids(frame)
        body = frames.body(frame, allow_empty=bool(attachment_ids))
        client_id = frames.client_id(frame)
        reply_to = frames.optional_seq(frame, "reply_to")
        thread = frames.optional_seq(frame, "thread")
        also_in_room = frames.optional_bool(frame, "also_in_room")
        sub = self._subscription(frame)
        self._check_grant("publish")
        access = sub.access
        attachments = None
        if attachment_ids:  # a database round trip only for a message with files
            check_may_post(access)
            try:
                attachments = await database_sync_to_async(attachments_claim)(
                    room_id=access.room_id, uploader_id=self.user_id, ids=attachment_ids, client_id=client_id
                )
            except ClaimRefused as refused:
                raise ClientError(refused.code, refused.detail) from None
        result = await message_post(
            access=access,
            author_id=self.user_id,
            author_username=self.user_json["username"],
            body=body,
            client_id=client_id,
            reply_to=reply_to,
            thread=thread,
            also_in_room=also_in_room,
            known_seq=sub.seen_seq,
            author_bot=self.bot,
            attachments=attachments,
        )
        if attachments:
            try:
                await database_sync_to_async(attachments_mark_sent)(
                    room_id=access.room_id, client_id=client_id, seq=result.seq
                )
            except DatabaseError as error:  # stored all the same: the persistence job sets it too
                logger.warning("attachments of %s/%s not marked sent: %r", access.room_id, result.seq, error)
        self.read_markers[access.room_id] = max(self.read_markers.get(access.room_id, 0), result.seq)
        # The message ended the author's typing (their readers stop showing it): the next
        # keystroke announces the next one at once, not after TYPING_INTERVAL.
        sub.last_typing, sub.sent_since_typing = 0.0, True
        await self._send_frame(ack_frame(room=access.slug, client_id=client_id, seq=result.seq), ref)

    async def handle_clap(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        count = frame.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ClientError("bad_request", "`count` must be a positive integer.")
        sub = self._subscription(frame)
        self._check_grant("publish")
        await self._limit("clap", sub.access.room_id)
        result = await message_clap(
            room_id=sub.access.room_id,
            room_slug=sub.access.slug,
            seq=seq,
            user_id=self.user_id,
            username=self.user_json["username"],
            count=min(count, CLAP_CAP),
        )
        sub.clap_revs[seq] = max(sub.clap_revs.get(seq, 0), result.rev)
        reply = claps_wire(
            room=sub.access.slug,
            seq=seq,
            total=result.total,
            rev=result.rev,
            user=self.user_json,
            user_total=result.user_total,
        )
        await self._send_frame(reply, ref)

    async def handle_typing(self, frame: dict, ref: object) -> None:
        sub = self._subscription(frame)
        try:
            self._check_grant("publish")
            check_may_post(sub.access)
        except (ActionRefused, ClientError):
            return  # who may not post is not typing either (a typing frame gets no answer)
        now = time.monotonic()
        if now - sub.last_typing < settings.TYPING_INTERVAL:
            return  # extra typing frames are dropped
        sub.last_typing = now
        renew, sub.sent_since_typing = sub.sent_since_typing, False
        await typing_announce(
            room_id=sub.access.room_id, user_id=self.user_id, username=self.user_json["username"], renew=renew
        )

    async def handle_read(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        sub = self._subscription(frame)
        seq = min(seq, sub.seen_seq)
        if seq <= self.read_markers.get(sub.access.room_id, 0):
            return
        self.read_markers[sub.access.room_id] = seq
        await message_mark_read(room_id=sub.access.room_id, user_id=self.user_id, seq=seq)

    async def handle_edit(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        body = frames.body(frame)
        sub = self._subscription(frame)
        self._check_grant("publish")
        check_may_post(sub.access)  # an edit is new content: the same checks as a send
        await self._limit("edit", sub.access.room_id)
        await message_edit(
            room_id=sub.access.room_id, room_slug=sub.access.slug, seq=seq, user_id=self.user_id, body=body
        )

    async def handle_delete(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        sub = self._subscription(frame)
        self._check_grant("publish")
        await self._limit("edit", sub.access.room_id)
        try:
            await message_delete(room_id=sub.access.room_id, room_slug=sub.access.slug, seq=seq, user_id=self.user_id)
        except NotTheAuthor:
            if not sub.access.can_moderate:
                raise
            await self._hide(sub, seq)

    async def handle_remove_preview(self, frame: dict, ref: object) -> None:
        """The author (or a moderator) removes a message's link card (messaging.previews)."""
        seq = frames.required_seq(frame)
        sub = self._subscription(frame)
        await self._limit("edit", sub.access.room_id)
        await database_sync_to_async(message_preview_remove)(
            room_id=sub.access.room_id,
            room_slug=sub.access.slug,
            seq=seq,
            user_id=self.user_id,
            can_moderate=sub.access.can_moderate,
        )

    async def handle_react(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        on = frames.required_bool(frame, "on")
        emoji = emoji_or_refuse(frame.get("emoji"))
        sub = self._subscription(frame)  # who may clap may react: any reader of the room
        await self._limit("react", sub.access.room_id)
        result = await message_react(
            room_id=sub.access.room_id,
            room_slug=sub.access.slug,
            seq=seq,
            user_id=self.user_id,
            username=self.user_json["username"],
            emoji=emoji,
            on=on,
        )
        # The room hears of it through its group; the reacting socket is answered at once
        # (with `ref`), also when nothing changed.
        reply = reactions_wire(room=sub.access.slug, seq=seq, reactions=result.summary.entries, rev=result.rev)
        await self._send_frame(reply, ref)

    async def handle_pin(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        pinned = frames.required_bool(frame, "pinned")
        sub = self._subscription(frame)
        if not sub.access.can_moderate:
            raise ClientError("forbidden", "Only the room's owner and moderators can pin messages.")
        await self._limit("pin", sub.access.room_id)
        try:
            # A moderation act (checked again and audited there), on a thread: it writes PostgreSQL.
            await database_sync_to_async(room_message_pin_by_ids)(
                room_id=sub.access.room_id, actor_id=self.user_id, seq=seq, pinned=pinned
            )
        except PermissionDenied as refused:
            raise ClientError("forbidden", str(refused)) from None
        except ValidationError as refused:
            raise ClientError("bad_request", " ".join(refused.messages)) from None

    async def _hide(self, sub: Subscription, seq: int) -> None:
        """A moderator deletes someone else's message: the page's moderation act, which
        checks the role order and writes the audit entry (rooms.moderation)."""
        try:
            await database_sync_to_async(moderation.room_message_hide_by_ids)(
                room_id=sub.access.room_id, actor_id=self.user_id, seq=seq
            )
        except PermissionDenied as refused:
            raise ClientError("forbidden", str(refused)) from None
        except ValidationError as refused:
            raise ClientError("not_found", " ".join(refused.messages)) from None

    def _check_grant(self, scope: str) -> None:
        """A socket opened with an API token does only what the token's scopes allow."""
        if self.grant is not None and scope not in self.grant.scopes:
            raise ClientError("forbidden", f"This token does not have the `{scope}` scope.")

    async def _limit(self, action: str, room_id: int) -> None:
        wait = await throttle.retry_after(action=action, room_id=room_id, user_id=self.user_id)
        if wait is not None:
            raise ClientError("rate_limited", "Too many requests; slow down.", retry_after=wait)


# Frame type -> the consumer's method that handles it: one per type of the contract's client
# frames (messaging.frames.FRAME_TYPES, the list the metrics count by too).
FRAME_HANDLERS: dict[str, Callable[[RoomsConsumer, dict, object], Awaitable[None]]] = {
    frame_type: getattr(RoomsConsumer, f"handle_{frame_type}") for frame_type in frames.FRAME_TYPES
}
RoomsConsumer.frame_handlers = FRAME_HANDLERS
