"""Mentions and direct messages: a notification for each reader a new message should
notify, by their settings for the room (messaging.notifications.preferences), pushed to them once.

Run by the persistence job after each batch of messages it wrote (``messaging.store.persistence.AFTER_BATCH``,
registered by ``messaging.apps``): a message notifies once it is in the database, and a job
redone after a crash stores no notification twice (one row per user, room, seq and kind), so
pushes no mention or direct message twice. What each reader hears:
- a mention (@username) of someone at "all" or "mentions": a ``mention`` row and frame;
- a message of a direct conversation, to its other people at "all" or "mentions": a ``direct``
  row and frame (a direct message counts as a mention: it is on the notifications page and
  in the e-mail digests);
- any other message, to the members at "all": a ``message`` frame and no row (what pages show
  as a browser notification; a job redone after a crash may send it again);
- nothing to a member at "nothing" or snoozed, nor to anyone who cannot read the room.
The e-mail digests of what was left unread are ``messaging.notifications.digests``.
"""

from __future__ import annotations

import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef

from messaging.models import Notification
from messaging.notifications.preferences import REASON_MENTION, REASON_MESSAGE, recipients_by_message
from messaging.store import changes
from protocol import events
from protocol.events import user_group
from protocol.wire import notification_frame, user_wire
from rooms.models import Membership, Room

MENTION = re.compile(r"(?<![\w@])@([\w.@+-]{1,150})")


def records_as_now(*, room_id: int, records: list[dict]) -> list[dict]:
    """The records as they are now: one deleted (or hidden) before it was persisted is left
    out, and one edited since is read in its edited form (Redis holds both)."""
    states = changes.states_of(room_id=room_id, seqs=[r["seq"] for r in records])
    current = []
    for record in records:
        state = states.get(record["seq"])
        if state is not None and state.deletion is not None:
            continue
        if state is not None and state.edit is not None:
            record = {**record, "body": state.edit["body"]}
        current.append(record)
    return current


def _mentioned_names(body: str) -> set[str]:
    return {name.rstrip(".").lower() for name in MENTION.findall(body)} if "@" in body else set()


def notify_mentions(*, room_id: int, records: list[dict]) -> None:
    """Notify, for each message of the batch, the readers their settings say should hear of it
    (mentions, direct messages, and every message to those at "all"), and push it to them once."""
    if not records:
        return
    loud = Membership.objects.filter(room=OuterRef("pk"), notify_level=Membership.NotifyLevel.ALL, banned=False)
    room = Room.objects.annotate(has_loud=Exists(loud)).filter(pk=room_id).first()
    if room is None:
        return
    if not (room.is_direct or room.has_loud or any("@" in r["body"] for r in records)):
        return  # the common case: nobody here can hear of these messages
    records = records_as_now(room_id=room_id, records=records)
    names_by_seq = {r["seq"]: _mentioned_names(r["body"]) for r in records}
    usernames = set().union(*names_by_seq.values()) if names_by_seq else set()
    ids_by_name: dict[str, int] = {}
    if usernames:
        pattern = "^(" + "|".join(re.escape(n) for n in sorted(usernames)) + ")$"
        ids_by_name = {
            name.lower(): pk
            for pk, name in get_user_model().objects.filter(username__iregex=pattern).values_list("pk", "username")
        }
    batch = [(r["author"]["id"], {ids_by_name[n] for n in names_by_seq[r["seq"]] if n in ids_by_name}) for r in records]
    layer = get_channel_layer()
    for record, found in zip(records, recipients_by_message(room=room, messages=batch), strict=True):
        for user_id, reason in sorted(found.items()):
            _notify(layer=layer, room=room, record=record, user_id=user_id, reason=reason)


def _notify(*, layer, room: Room, record: dict, user_id: int, reason: str) -> None:
    excerpt = record["body"][:200]
    if reason != REASON_MESSAGE:
        _, created = Notification.objects.get_or_create(
            user_id=user_id,
            room=room,
            seq=record["seq"],
            kind=Notification.Kind.MENTION if reason == REASON_MENTION else Notification.Kind.DIRECT,
            defaults={"from_user_id": record["author"]["id"], "excerpt": excerpt},
        )
        if not created:
            return  # a redone job: pushed the first time
    frame = notification_frame(
        kind=reason,
        room=room.slug,
        seq=record["seq"],
        sender=user_wire(record["author"]["id"], record["author"]["username"]),
        excerpt=excerpt,
    )
    async_to_sync(layer.group_send)(user_group(user_id), events.user_notify_event(frame=frame))
