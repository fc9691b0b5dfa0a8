"""What a socket does with each layer event (protocol.events): one method per event type.

A handler named after the event type (``room.claps`` -> ``room_claps``) only sends, or
updates what the socket knows of its rooms (rights, read markers, activity). A room's
messages never come here: the process's fan-out writes them (messaging.realtime.fanout).
"""

from __future__ import annotations

import dataclasses

from messaging.frames import ClientError
from messaging.selectors import aroom_counters
from messaging.store import changes
from protocol.events import activity_group, user_group
from protocol.wire import (
    direct_joined_frame,
    encode,
    kicked_frame,
    presence_diff_frame,
    typing_frame,
    unread_frame,
)
from rooms.services import RoomBanned, RoomNotFound, aroom_access_for_subscriber


class LayerEvents:
    """The layer-event half of ``messaging.realtime.consumers.RoomsConsumer`` (a mixin: it
    uses the consumer's socket, subscriptions and user)."""

    # --- Events from the channel layer ----------------------------------------

    async def layer_reconnected(self, event: dict) -> None:
        """The pub/sub layer lost its connection to Redis for a while (messaging.realtime.layers):
        events may have been missed. Close; the client resubscribes with `since`."""
        await self.close(code=1011)

    async def room_message(self, event: dict) -> None:
        """Never here: the layer hands a room's messages to its fan-out (messaging.realtime.layers)."""

    async def room_change(self, event: dict) -> None:
        if self._sub_for(event) is not None:
            await self.send(text_data=event["frame"])

    async def room_notice(self, event: dict) -> None:
        """The room's name, topic or members changed (protocol.events.room_notice_event: one
        frame, or several new members at once)."""
        if self._sub_for(event) is not None:
            await self._send_texts(event["frames"] if "frames" in event else [event["frame"]])

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
        checked = self.markers_checked
        if checked is None or room_id not in checked or authors is None or self.user_id in authors:
            # The marker PostgreSQL gave at connect may be old, and one of the user's messages
            # (sent from another tab) moved it: Redis has the newest.
            if checked is None:
                checked = self.markers_checked = set()
            checked.add(room_id)
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
        protocol.events, accounts.services.user_sessions_end): unless this socket's session is one of those
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
            sub.access = await aroom_access_for_subscriber(
                slug=sub.access.slug, user_id=self.user_id, username=self.user_json["username"]
            )
        except (RoomNotFound, RoomBanned):
            await self.user_kicked({"room_id": event["room_id"], "reason": "You no longer have access to this room."})

    async def _send_unread(self, room_id: int, slug: str) -> None:
        latest = self.latest_seen.get(room_id, 0)
        count = max(0, latest - self.read_markers.get(room_id, 0))
        await self.send(text_data=encode(unread_frame(room=slug, count=count, seq=latest)))
