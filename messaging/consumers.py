"""The WebSocket endpoint `/ws/`: one connection per tab, any number of rooms.

The consumer authenticates, parses, dispatches to a service and sends; rights are
checked once at subscribe and cached for the subscription (changes arrive on the
user's own group). A room's messages do not pass through the consumer: the process's
fan-out for the room (messaging.fanout) orders them once and writes them to every
subscribed socket's outbox (messaging.sockets), which every other frame of the
consumer goes through too, in order, bounded.

Whatever a frame or an event does, the socket lets go of what it holds: a handler's
exception is answered with an `error` frame (a frame's) or closes the socket (1011, an
event's), and the socket's fan-out feeds, groups, presence entries and metrics are released
in a ``finally`` however the connection ends. What one socket may hold and ask is bounded:
sockets per user and process, subscriptions per socket, subscribe frames per window, and a
subscribe's replay of missed changes (``CHANGE_REPLAY_LIMIT`` revisions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError
from redis.exceptions import RedisError

from messaging import changes, frames, metrics, online, presence, throttle
from messaging.events import activity_group, room_group, session_fingerprint, user_group
from messaging.fanout import Feed, RoomFanout
from messaging.frames import ClientError
from messaging.models import CLAP_CAP
from messaging.selectors import aroom_counters, changes_after, messages_replay
from messaging.services import (
    ActionRefused,
    NotTheAuthor,
    message_clap,
    message_delete,
    message_edit,
    message_mark_read,
    message_reply_quote,
    message_send,
    presence_broadcast,
    presence_left,
    typing_announce,
)
from messaging.sockets import Outbox, daphne_protocol, send_close_below_autobahn, server_inbox, server_socket
from messaging.wire import (
    ack_frame,
    claps_wire,
    direct_joined_frame,
    encode,
    error_frame,
    kicked_frame,
    message_wire,
    pong_frame,
    presence_diff_frame,
    presence_frame,
    subscribed_frame,
    typing_frame,
    unread_frame,
    unsubscribed_frame,
    user_wire,
)
from pubsub_site.handshakes import handshake_done, try_again_later
from rooms import moderation
from rooms.services import RoomAccess, RoomBanned, RoomNotFound, aroom_access_for_subscriber

logger = logging.getLogger(__name__)

# How long a cut-off socket's close frame may wait behind what its client does not read.
CLOSE_WAIT_SECONDS = 1.0


@dataclass
class Subscription:
    access: RoomAccess
    fanout: RoomFanout
    feed: Feed
    last_seq: int = 0  # the room's latest seq when the subscription started
    presence_member: str = ""
    clap_revs: dict[int, int] = field(default_factory=dict)
    last_typing: float = 0.0
    sent_since_typing: bool = False  # a message went out since the last typing frame

    @property
    def seen_seq(self) -> int:
        """The highest seq this socket may have been sent."""
        return max(self.last_seq, self.fanout.last_seq or 0)


class RoomsConsumer(AsyncWebsocketConsumer):
    outbox: Outbox | None = None
    refusals: deque[float] | None = None  # when frames were refused lately (made at the first)
    subscribe_window: throttle.LocalWindow | None = None  # this socket's subscribes (made at the first)
    refused: str | None = None  # why the handshake was refused after the accept (a metrics outcome)
    cut_off = False
    closing = False
    logged_out = False

    async def __call__(self, scope, receive, send) -> None:
        """Channels' ``AsyncConsumer.__call__``, reading one inbox where the server has one.

        Channels waits on two tasks per socket (the server's ``receive`` and the channel
        layer's queue for the consumer's channel) and makes a new task and an
        ``asyncio.wait`` per event. Here the layer puts the consumer's events into the
        server's own queue of the socket's frames (messaging.sockets.server_inbox), and one
        loop reads both in the order they came: no task, queue or copy of an event per
        socket. Under a server we do not know, Channels' way."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        inbox = server_inbox(receive)
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
        except Exception:
            # A defect in an event's handler (a frame's is answered in `receive`): close, and
            # let go of everything below; the client reconnects and resubscribes with `since`.
            logger.exception("A WebSocket connection failed; closing it")
            with contextlib.suppress(Exception):
                await self.close(code=1011)
        finally:
            # However the connection ended (`disconnect` did this already when it ran): first
            # what this process holds, at once, then what Redis holds (the presence entries
            # left would expire anyway once the keeper stops refreshing them).
            dropped = self._drop_subscriptions()
            self.channel_layer.drop_channel(self.channel_name)
            if self.outbox is not None:
                self.outbox.close()
            metrics.connection_closed(self)
            online.connection_closed(channel=self.channel_name)
            with contextlib.suppress(Exception):
                await self._leave(dropped)

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
        self.user_json = user_wire(user.pk, user.get_username())
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
        self.markers_checked: set[int] = set()
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

    async def _refuse(self, error: ClientError, *, code: int) -> None:
        """Refuse the connection in a way its client can read: accepted, an `error` frame
        saying why, closed with ``code`` (a refusal before the accept is an HTTP 403)."""
        self.refused = error.code
        await self.accept()
        await self._send_error(error, None)
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        await self._leave(self._drop_subscriptions())

    def _drop_subscriptions(self) -> list[Subscription]:
        """End every subscription in this process (no await: nothing can stop it halfway)."""
        subscriptions = getattr(self, "subscriptions", None) or {}
        return [sub for sub in map(self._drop_subscription, list(subscriptions)) if sub is not None]

    async def _leave(self, dropped: list[Subscription]) -> None:
        """What Redis holds for the socket: its rooms' groups and presence, its user's and
        activity groups."""
        for sub in dropped:
            with contextlib.suppress(RedisError):
                await self._leave_room(sub, follow_activity=False)
        if hasattr(self, "activity_rooms"):
            await self.channel_layer.group_discard_all(
                [user_group(self.user_id), *map(activity_group, self.activity_rooms)], self.channel_name
            )

    # --- Frames from the client ------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
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
        handler = FRAME_HANDLERS.get(frame_type)
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

    def _subscription(self, frame: dict) -> Subscription:
        slug = frames.required_str(frame, "room")
        sub = self.subscriptions.get(slug)
        if sub is None:
            raise ClientError("not_subscribed", "You are not subscribed to this room.")
        return sub

    async def handle_ping(self, frame: dict, ref: object) -> None:
        await self._send_frame(pong_frame(), ref)

    async def handle_subscribe(self, frame: dict, ref: object) -> None:
        if self.subscribe_window is None:
            self.subscribe_window = throttle.LocalWindow()
        wait = self.subscribe_window.retry_after(settings.WS_SUBSCRIBE_RATE)
        if wait is not None:
            raise ClientError("rate_limited", "Too many subscribes; slow down.", retry_after=wait)
        slug = frames.required_str(frame, "room")
        since = frames.optional_int(frame, "since")
        since_rev = frames.optional_int(frame, "rev")
        if slug not in self.subscriptions and len(self.subscriptions) >= settings.WS_MAX_SUBSCRIPTIONS:
            raise ClientError(
                "too_many_subscriptions",
                f"A connection follows at most {settings.WS_MAX_SUBSCRIPTIONS} rooms; unsubscribe from one first.",
            )
        try:
            access = await aroom_access_for_subscriber(slug=slug, user_id=self.user_id)
        except RoomNotFound:
            raise ClientError("not_found", "No such room.") from None
        except RoomBanned:
            raise ClientError("banned", "You are banned from this room.") from None
        if slug in self.subscriptions:
            await self._end_subscription(slug)
        # Attach to the room's fan-out and join its group before reading the counters: a
        # message with a later seq waits in the feed, and nothing falls between the replay
        # and the stream.
        fanout = self.channel_layer.room_fanout(room_group(access.room_id), room_id=access.room_id, slug=slug)
        member = presence.member_key(
            user_id=self.user_id,
            username=self.user_json["username"],
            spectator=not access.can_post,
            channel=self.channel_name,
        )
        sub = Subscription(
            access=access, fanout=fanout, feed=fanout.attach(self.outbox, self._order_lost), presence_member=member
        )
        self.subscriptions[slug] = sub
        metrics.SUBSCRIPTIONS.inc()
        self.slug_by_room_id[access.room_id] = slug
        try:
            await self._start_subscription(sub, since=since, since_rev=since_rev, ref=ref)
        except BaseException:
            # Half a subscription is none: leave the fan-out and the group (the client may retry).
            if self.subscriptions.get(slug) is sub:
                with contextlib.suppress(RedisError):
                    await self._end_subscription(slug)
            raise

    async def _start_subscription(self, sub: Subscription, *, since: int | None, since_rev: int | None, ref) -> None:
        access, slug = sub.access, sub.access.slug
        await self.channel_layer.group_add(room_group(access.room_id), self.channel_name)
        # A socket that follows the room's messages needs no news of its activity (unread
        # counts; its page counts what it has not seen): in a room of a thousand, that was a
        # frame a second to every socket, more work than the messages. It follows the room's
        # activity again once the subscription ends.
        self.activity_rooms[access.room_id] = slug
        await self.channel_layer.group_discard(activity_group(access.room_id), self.channel_name)
        # Online in the room, and its counters read in the same call (after the group_add).
        joined = await presence.join(room_id=access.room_id, member=sub.presence_member)
        presence.keeper(on_gone=presence_left).add(access.room_id, sub.presence_member)
        latest, rev = joined.counters or await aroom_counters(room_id=access.room_id)
        sub.last_seq = latest
        replay: list = []
        change_frames: list[dict] = []
        recovered = True
        if since is not None:
            if since > latest or latest - since > settings.MESSAGE_REPLAY_LIMIT:
                recovered = False
            elif since_rev is not None and rev - since_rev > settings.CHANGE_REPLAY_LIMIT:
                # Too far behind to read what changed: what it reads is bounded by the
                # revisions missed, never by the room's history. The client reloads.
                recovered = False
            else:
                replay = await database_sync_to_async(messages_replay)(room_id=access.room_id, after=since, upto=latest)
                if since_rev is not None and since_rev < rev:
                    found = await database_sync_to_async(changes_after)(
                        room_id=access.room_id,
                        room_slug=slug,
                        rev=since_rev,
                        upto_seq=since,
                        limit=settings.CHANGE_REPLAY_LIMIT,
                    )
                    if found is None:
                        recovered, replay = False, []
                    else:
                        change_frames = found
        subscribed = subscribed_frame(room=slug, seq=latest, rev=rev, recovered=recovered)
        if ref is not None:
            subscribed["ref"] = ref
        texts = [encode(subscribed)]
        for record, state in replay:
            if state.claps:
                sub.clap_revs[record["seq"]] = state.clap_rev or state.rev or record["rev"]
            texts.append(encode(message_wire(record, room=slug, state=state)))
        for change in change_frames:
            if change["type"] == "claps":
                sub.clap_revs[change["seq"]] = change["rev"]
            texts.append(encode(change))
        texts.append(encode(presence_frame(room=slug, online=joined.online.users, count=joined.online.count)))
        # In one write where the server takes frames directly (each write is a system call),
        # before the messages the fan-out held for the socket since it attached.
        await self._send_texts(texts)
        await sub.fanout.start(sub.feed, after=latest)
        if joined.came_online:
            user = presence.user_from_member(sub.presence_member)
            await presence_broadcast(room_id=access.room_id, joins=[user], leaves=[])

    async def handle_unsubscribe(self, frame: dict, ref: object) -> None:
        sub = self._subscription(frame)
        await self._end_subscription(sub.access.slug)
        await self._send_frame(unsubscribed_frame(room=sub.access.slug), ref)

    async def handle_send(self, frame: dict, ref: object) -> None:
        frames.required_str(frame, "room")
        body = frames.body(frame)
        client_id = frames.client_id(frame)
        reply_to = frames.optional_seq(frame, "reply_to")
        sub = self._subscription(frame)
        access = sub.access
        _check_may_post(access)
        slow_mode_seconds = 0 if access.can_moderate else access.slow_mode_seconds
        reply = None
        if reply_to is not None:
            if reply_to > sub.seen_seq:
                # Past the room's latest seq as this socket knows it: no such message (yet).
                raise ClientError("bad_request", f"`reply_to`: this room has no message {reply_to}.")
            reply = await message_reply_quote(room_id=access.room_id, seq=reply_to)
        result = await message_send(
            room_id=access.room_id,
            room_slug=access.slug,
            author_id=self.user_id,
            author_username=self.user_json["username"],
            body=body,
            client_id=client_id,
            limits=throttle.send_limits(slow_mode_seconds=slow_mode_seconds),
            reply=reply,
        )
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
            _check_may_post(sub.access)
        except ClientError:
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
        _check_may_post(sub.access)  # an edit is new content: the same checks as a send
        await self._limit("edit", sub.access.room_id)
        await message_edit(
            room_id=sub.access.room_id, room_slug=sub.access.slug, seq=seq, user_id=self.user_id, body=body
        )

    async def handle_delete(self, frame: dict, ref: object) -> None:
        seq = frames.required_seq(frame)
        sub = self._subscription(frame)
        await self._limit("edit", sub.access.room_id)
        try:
            await message_delete(room_id=sub.access.room_id, room_slug=sub.access.slug, seq=seq, user_id=self.user_id)
        except NotTheAuthor:
            if not sub.access.can_moderate:
                raise
            await self._hide(sub, seq)

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

    # --- Events from the channel layer ----------------------------------------

    def _sub_for(self, event: dict) -> Subscription | None:
        slug = self.slug_by_room_id.get(event["room_id"])
        return self.subscriptions.get(slug) if slug else None

    async def layer_reconnected(self, event: dict) -> None:
        """The pub/sub layer lost its connection to Redis for a while (messaging.layers):
        events may have been missed. Close; the client resubscribes with `since`."""
        await self.close(code=1011)

    async def room_message(self, event: dict) -> None:
        """Never here: the layer hands a room's messages to its fan-out (messaging.layers)."""

    async def room_change(self, event: dict) -> None:
        if self._sub_for(event) is not None:
            await self.send(text_data=event["frame"])

    async def room_notice(self, event: dict) -> None:
        """The room's name, topic or members changed (messaging.events.room_notice_on_commit)."""
        if self._sub_for(event) is not None:
            await self.send(text_data=event["frame"])

    async def room_claps(self, event: dict) -> None:
        sub = self._sub_for(event)
        if sub is None:
            return
        if event["rev"] > sub.clap_revs.get(event["seq"], 0):  # else: not newer than what was sent
            sub.clap_revs[event["seq"]] = event["rev"]
            await self.send(text_data=event["frame"])
        await self.send(text_data=event["board"])

    async def room_typing(self, event: dict) -> None:
        sub = self._sub_for(event)
        if sub is not None and event["user"]["id"] != self.user_id:
            await self.send(text_data=encode(typing_frame(room=sub.access.slug, user=event["user"])))

    async def room_presence(self, event: dict) -> None:
        sub = self._sub_for(event)
        if sub is None:
            return
        # A user's own tabs know they are here.
        joins = [u for u in event["joins"] if u["id"] != self.user_id]
        leaves = [u for u in event["leaves"] if u["id"] != self.user_id]
        if joins or leaves:
            frame = presence_diff_frame(room=sub.access.slug, joins=joins, leaves=leaves, count=event["count"])
            await self.send(text_data=encode(frame))

    async def room_state(self, event: dict) -> None:
        sub = self._sub_for(event)
        if sub is not None:
            sub.access = dataclasses.replace(
                sub.access, locked=event["locked"], slow_mode_seconds=event.get("slow_mode_seconds", 0)
            )

    async def room_activity(self, event: dict) -> None:
        room_id = event["room_id"]
        slug = self.activity_rooms.get(room_id)
        if slug is None:
            return
        self.latest_seen[room_id] = max(self.latest_seen.get(room_id, 0), event["seq"])
        authors = event.get("authors", ())
        if room_id not in self.markers_checked or authors is None or self.user_id in authors:
            # The marker PostgreSQL gave at connect may be old, and one of the user's messages
            # (sent from another tab) moved it: Redis has the newest.
            self.markers_checked.add(room_id)
            marker = await changes.aread_marker(room_id=room_id, user_id=self.user_id)
            if marker is not None:
                self.read_markers[room_id] = max(self.read_markers.get(room_id, 0), marker)
        await self._send_unread(room_id, slug)

    async def user_read(self, event: dict) -> None:
        room_id = event["room_id"]
        self.read_markers[room_id] = max(self.read_markers.get(room_id, 0), event["seq"])
        slug = self.activity_rooms.get(room_id)
        if slug is None:
            return
        if room_id not in self.latest_seen:
            # No activity since this socket opened: its page shows the count it was rendered
            # with, which a read in another tab changes too.
            self.latest_seen[room_id] = (await aroom_counters(room_id=room_id))[0]
        await self._send_unread(room_id, slug)

    async def user_notify(self, event: dict) -> None:
        await self.send(text_data=event["frame"])

    async def user_kicked(self, event: dict) -> None:
        room_id = event["room_id"]
        if self.activity_rooms.pop(room_id, None) is not None:
            await self.channel_layer.group_discard(activity_group(room_id), self.channel_name)
        slug = self.slug_by_room_id.get(room_id)
        if slug is None:
            return
        await self._end_subscription(slug)
        await self.send(text_data=encode(kicked_frame(room=slug, reason=event["reason"])))

    async def user_logged_out(self, event: dict) -> None:
        """This socket's session logged out (in another tab): it hears nothing more, and its
        next frame is refused and closes it."""
        if event["session"] != self.session:
            return
        self.logged_out = True
        for slug in list(self.subscriptions):
            await self._end_subscription(slug, follow_activity=False)
        await self.channel_layer.group_discard_all(
            [user_group(self.user_id), *map(activity_group, self.activity_rooms)], self.channel_name
        )
        self.activity_rooms = {}

    async def user_sessions_ended(self, event: dict) -> None:
        """The user's sessions ended (deactivated, the password changed, the account deleted:
        messaging.events, accounts.services.user_sessions_end): unless this socket's session is one of those
        kept (the browser that changed the password), it ends as a logged-out one does,
        says why, and closes (1008)."""
        if self.session in event.get("keep", ()):
            return
        await self.user_logged_out({"session": self.session})
        await self._send_error(ClientError("forbidden", event["detail"]), None)
        await self.close(code=1008)

    async def room_access_changed(self, event: dict) -> None:
        """Who may read the room changed (it became private): read this subscriber's rights again."""
        await self.user_membership(event)

    async def user_direct_joined(self, event: dict) -> None:
        """The user is in a new direct conversation: follow its activity, and tell the page."""
        room_id, slug = event["room_id"], event["room"]
        if room_id not in self.activity_rooms:
            self.activity_rooms[room_id] = slug
            await self.channel_layer.group_add(activity_group(room_id), self.channel_name)
        await self.send(text_data=encode(direct_joined_frame(room=slug, title=event["title"])))

    async def user_membership(self, event: dict) -> None:
        """The user's rights in a room changed: read them again."""
        sub = self._sub_for(event)
        if sub is None:
            return
        try:
            sub.access = await aroom_access_for_subscriber(slug=sub.access.slug, user_id=self.user_id)
        except (RoomNotFound, RoomBanned):
            await self.user_kicked({"room_id": event["room_id"], "reason": "You no longer have access to this room."})

    # --- Helpers ---------------------------------------------------------------

    async def _limit(self, action: str, room_id: int) -> None:
        wait = await throttle.retry_after(action=action, room_id=room_id, user_id=self.user_id)
        if wait is not None:
            raise ClientError("rate_limited", "Too many requests; slow down.", retry_after=wait)

    def _flooding(self) -> bool:
        """True when this connection keeps going past its limits."""
        now = time.monotonic()
        if self.refusals is None:
            self.refusals = deque()
        self.refusals.append(now)
        while self.refusals and self.refusals[0] < now - settings.WS_FLOOD_WINDOW:
            self.refusals.popleft()
        return len(self.refusals) >= settings.WS_FLOOD_REFUSALS

    async def _send_unread(self, room_id: int, slug: str) -> None:
        latest = self.latest_seen.get(room_id, 0)
        count = max(0, latest - self.read_markers.get(room_id, 0))
        await self.send(text_data=encode(unread_frame(room=slug, count=count, seq=latest)))

    async def _end_subscription(self, slug: str, *, follow_activity: bool = True) -> None:
        sub = self._drop_subscription(slug)
        if sub is not None:
            await self._leave_room(sub, follow_activity=follow_activity)

    def _drop_subscription(self, slug: str) -> Subscription | None:
        """The subscription's end in this process: the gauge, the fan-out, the presence keeper."""
        sub = self.subscriptions.pop(slug, None)
        if sub is None:
            return None
        metrics.SUBSCRIPTIONS.dec()
        self.slug_by_room_id.pop(sub.access.room_id, None)
        sub.fanout.detach(sub.feed)
        presence.keeper(on_gone=presence_left).discard(sub.access.room_id, sub.presence_member)
        return sub

    async def _leave_room(self, sub: Subscription, *, follow_activity: bool) -> None:
        """The subscription's end in Redis: the room's group, and presence (told to the room)."""
        await self.channel_layer.group_discard(room_group(sub.access.room_id), self.channel_name)
        if follow_activity and sub.access.room_id in self.activity_rooms:
            await self.channel_layer.group_add(activity_group(sub.access.room_id), self.channel_name)
        if await presence.leave(room_id=sub.access.room_id, member=sub.presence_member):
            await presence_broadcast(
                room_id=sub.access.room_id, joins=[], leaves=[presence.user_from_member(sub.presence_member)]
            )

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
        for sub in self.subscriptions.values():
            sub.fanout.detach(sub.feed)
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


def _check_may_post(access: RoomAccess) -> None:
    """What a send checks, and an edit and typing too: new content in the room."""
    if not access.can_post:
        raise ClientError("forbidden", "Spectators cannot post; join the room to take part.")
    if access.locked:
        raise ClientError("room_locked", "The room is locked.")
    if access.is_muted():
        raise ClientError("muted", "You are muted in this room.", until=access.muted_until.isoformat())


# Frame type -> the consumer's method that handles it: one per type of the contract's client
# frames (messaging.frames.FRAME_TYPES, the list the metrics count by too).
FRAME_HANDLERS: dict[str, Callable[[RoomsConsumer, dict, object], Awaitable[None]]] = {
    frame_type: getattr(RoomsConsumer, f"handle_{frame_type}") for frame_type in frames.FRAME_TYPES
}
