"""A socket's subscriptions to rooms, and the one place the subscribe order is written.

Subscribing is, in this order (``Subscriptions.handle_subscribe`` and ``_start_subscription``):
attach to the room's fan-out (a message with a later seq waits in the socket's feed), join
the room's group, enter the room's presence (its counters and details revision read in the
same call: a later change to its members or name is told to the socket), read the counters,
replay what the client missed (``since``, ``rev``), then start the stream from the fan-out
after the replay. Nothing falls between the replay and the stream, and a
subscribe that fails halfway undoes itself. Ending a subscription undoes it in reverse:
this process first (the fan-out, the presence keeper), then Redis (the group, presence).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings
from redis.exceptions import RedisError

from messaging import frames, metrics
from messaging.frames import ClientError
from messaging.realtime import presence, throttle
from messaging.realtime.fanout import Feed, RoomFanout
from messaging.selectors import aroom_counters, changes_after, messages_replay
from protocol.events import activity_group, room_group, user_group
from protocol.wire import (
    encode,
    message_wire,
    presence_frame,
    subscribed_frame,
    unsubscribed_frame,
)
from rooms.services import RoomAccess, RoomBanned, RoomNotFound, aroom_access_for_subscriber


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


class Subscriptions:
    """The subscription half of ``messaging.realtime.consumers.RoomsConsumer`` (a mixin: it
    uses the consumer's socket, user and channel layer)."""

    subscribe_window: throttle.LocalWindow | None = None  # this socket's subscribes (made at the first)

    def _subscription(self, frame: dict) -> Subscription:
        slug = frames.required_str(frame, "room")
        sub = self.subscriptions.get(slug)
        if sub is None:
            raise ClientError("not_subscribed", "You are not subscribed to this room.")
        return sub

    async def handle_subscribe(self, frame: dict, ref: object) -> None:
        if self.subscribe_window is None:
            self.subscribe_window = throttle.LocalWindow()
        wait = self.subscribe_window.retry_after(settings.WS_SUBSCRIBE_RATE)
        if wait is not None:
            raise ClientError("rate_limited", "Too many subscribes; slow down.", retry_after=wait)
        slug = frames.required_str(frame, "room")
        grant = getattr(self, "grant", None)  # an API token's (messaging.realtime.consumers)
        if grant is not None and not grant.allows_read(slug):
            raise ClientError("forbidden", "This token may not read this room.")
        since = frames.optional_int(frame, "since")
        since_rev = frames.optional_int(frame, "rev")
        if slug not in self.subscriptions and len(self.subscriptions) >= settings.WS_MAX_SUBSCRIPTIONS:
            raise ClientError(
                "too_many_subscriptions",
                f"A connection follows at most {settings.WS_MAX_SUBSCRIPTIONS} rooms; unsubscribe from one first.",
            )
        try:
            access = await aroom_access_for_subscriber(
                slug=slug, user_id=self.user_id, username=self.user_json["username"]
            )
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
        presence.keeper(on_gone=presence.presence_left).add(access.room_id, sub.presence_member)
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
                if since < latest:  # else nothing was missed: no trip to the database thread
                    replay = await database_sync_to_async(messages_replay)(
                        room_id=access.room_id, after=since, upto=latest
                    )
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
        subscribed = subscribed_frame(room=slug, seq=latest, rev=rev, recovered=recovered, details=joined.details)
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
            await presence.presence_broadcast(room_id=access.room_id, joins=[user], leaves=[])

    async def handle_unsubscribe(self, frame: dict, ref: object) -> None:
        sub = self._subscription(frame)
        await self._end_subscription(sub.access.slug)
        await self._send_frame(unsubscribed_frame(room=sub.access.slug), ref)

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
        presence.keeper(on_gone=presence.presence_left).discard(sub.access.room_id, sub.presence_member)
        return sub

    async def _leave_room(self, sub: Subscription, *, follow_activity: bool) -> None:
        """The subscription's end in Redis: the room's group, and presence (told to the room)."""
        await self.channel_layer.group_discard(room_group(sub.access.room_id), self.channel_name)
        if follow_activity and sub.access.room_id in self.activity_rooms:
            await self.channel_layer.group_add(activity_group(sub.access.room_id), self.channel_name)
        if await presence.leave(room_id=sub.access.room_id, member=sub.presence_member):
            await presence.presence_broadcast(
                room_id=sub.access.room_id, joins=[], leaves=[presence.user_from_member(sub.presence_member)]
            )

    def _sub_for(self, event: dict) -> Subscription | None:
        slug = self.slug_by_room_id.get(event["room_id"])
        return self.subscriptions.get(slug) if slug else None

    def detach_feeds(self) -> None:
        for sub in self.subscriptions.values():
            sub.fanout.detach(sub.feed)
