"""Mentions: a notification for each @username who can read the room, pushed to them once.

Run by the persistence job after each batch of messages it wrote (``messaging.store.persistence.AFTER_BATCH``,
registered by ``messaging.apps``): a mention is notified once its message is in the database,
and a job redone after a crash notifies no one twice (one notification row per user, room,
seq and kind). The e-mail digests of the mentions left unread are ``messaging.notifications.digests``.
"""

from __future__ import annotations

import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from messaging.models import Notification
from messaging.store import changes
from protocol import events
from protocol.events import user_group
from protocol.wire import notification_frame, user_wire
from rooms.models import Membership, Room
from rooms.selectors import room_can_read

MENTION = re.compile(r"(?<![\w@])@([\w.@+-]{1,150})")


def notify_mentions(*, room_id: int, records: list[dict]) -> None:
    """Store a notification for each @username who can read the room, and push it to them once.

    What counts is the message as it is now: one deleted (or hidden) before it was persisted
    notifies no one, and one edited since is read in its edited form (Redis holds both)."""
    records = [r for r in records if "@" in r["body"]]
    if not records:
        return
    states = changes.states_of(room_id=room_id, seqs=[r["seq"] for r in records])
    current = []
    for record in records:
        state = states.get(record["seq"])
        if state is not None and state.deletion is not None:
            continue
        if state is not None and state.edit is not None:
            record = {**record, "body": state.edit["body"]}
        current.append(record)
    records = [r for r in current if "@" in r["body"]]
    if not records:
        return
    room = Room.objects.get(pk=room_id)
    usernames = {name.rstrip(".").lower() for r in records for name in MENTION.findall(r["body"])}
    if not usernames:
        return
    pattern = "^(" + "|".join(re.escape(n) for n in sorted(usernames)) + ")$"
    users = {u.username.lower(): u for u in get_user_model().objects.filter(username__iregex=pattern)}
    memberships = {m.user_id: m for m in Membership.objects.filter(room=room, user__in=users.values())}
    layer = get_channel_layer()
    for record in records:
        mentioned = {name.rstrip(".").lower() for name in MENTION.findall(record["body"])}
        for name in sorted(mentioned):
            user = users.get(name)
            if user is None or user.pk == record["author"]["id"]:
                continue
            if not room_can_read(room=room, membership=memberships.get(user.pk)):
                continue  # an outsider: no notification, nothing leaks
            notification, created = Notification.objects.get_or_create(
                user=user,
                room=room,
                seq=record["seq"],
                kind=Notification.Kind.MENTION,
                defaults={"from_user_id": record["author"]["id"], "excerpt": record["body"][:200]},
            )
            if created:
                frame = notification_frame(
                    kind="mention",
                    room=room.slug,
                    seq=record["seq"],
                    sender=user_wire(record["author"]["id"], record["author"]["username"]),
                    excerpt=notification.excerpt,
                )
                async_to_sync(layer.group_send)(user_group(user.pk), events.user_notify_event(frame=frame))
