"""Pinned messages: a room's moderators pin and unpin its messages; everyone sees the list.

Pinning is a moderation act (rooms.moderation): checked with the room's authority (its
owner and moderators; site staff from the admin; nobody in a direct conversation), recorded
in the AuditLog in the same transaction, its frame (``pinned``) sent to the room on commit.
The state is written to Redis with the room's next ``rev`` (messaging.store.pins), so that
a client away learns of it by ``rev``; the persistence job copies it to PostgreSQL.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from messaging.models import Pin
from messaging.selectors import message_get, messages_at, room_counters
from messaging.services import persist_enqueue
from messaging.store import changes
from messaging.store import pins as store
from protocol import events
from protocol.events import room_group
from protocol.wire import now_iso, pinned_wire, reply_wire, user_wire
from pubsub_site.redis.client import all_room_redis_urls, room_redis_url
from rooms.models import AuditLog, Room
from rooms.moderation import audit_record, authority_for, room_for_update


def room_pins_list(*, room_id: int) -> list[dict]:
    """The room's pinned messages, the last pinned first: each its ``seq``, its quote
    (``message``: protocol.wire.reply_wire), who pinned it and when. A deleted message is
    not listed. PostgreSQL's pins with Redis's newer state over them."""
    seqs = set(Pin.objects.filter(message__room_id=room_id).values_list("message__seq", flat=True))
    seqs.update(store.pins_all(room_id=room_id))
    listed = [
        {"seq": record["seq"], "message": reply_wire(record, state), "by": state.pin["by"], "at": state.pin["at"]}
        for record, state in messages_at(room_id=room_id, seqs=sorted(seqs))
        if state.pin and state.pin["pinned"] and not state.deleted
    ]
    return sorted(listed, key=lambda pin: pin["at"], reverse=True)


def room_message_pin(
    *, room: Room, actor: AbstractBaseUser, seq: int, pinned: bool, acting_as_staff: bool = False
) -> int:
    """Pin (``pinned``) or unpin a message of the room; returns the room's new ``rev``.
    PermissionDenied for who is not a moderator, ValidationError for what cannot be done."""
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        room = room_for_update(room)  # two moderators' pins of one room never interleave
        found = message_get(room_id=room.pk, seq=seq)
        if found is None:
            raise ValidationError("No such message.")
        record, state = found
        is_pinned = bool(state.pin and state.pin["pinned"])
        if pinned:
            if state.deleted:
                raise ValidationError("The message was deleted.")
            if is_pinned:
                raise ValidationError("The message is already pinned.")
            if len(room_pins_list(room_id=room.pk)) >= settings.PINS_MAX_PER_ROOM:
                raise ValidationError(f"A room holds at most {settings.PINS_MAX_PER_ROOM} pinned messages; unpin one.")
        elif not is_pinned:
            raise ValidationError("The message is not pinned.")
        # The entry first: if the pin fails, the transaction takes it back.
        audit_record(
            authority,
            room=room,
            action=AuditLog.Action.PIN_MESSAGE if pinned else AuditLog.Action.UNPIN_MESSAGE,
            target_id=record["author"]["id"],
            seq=seq,
        )
        by, at = user_wire(actor.pk, actor.get_username()), now_iso()
        result = store.pin_set(room_id=room.pk, seq=seq, pinned=pinned, by=by, at=at)
        if result.status == changes.NOT_INITIALISED:
            room_counters(room_id=room.pk)
            result = store.pin_set(room_id=room.pk, seq=seq, pinned=pinned, by=by, at=at)
        if result.status < 0:
            deleted = result.status == changes.ALREADY_DELETED
            raise ValidationError("The message was deleted." if deleted else "No such message.")
        frame = pinned_wire(
            room=room.slug,
            seq=seq,
            pin={"pinned": pinned, "by": by, "at": at},
            rev=result.rev,
            message=reply_wire(record, state),
        )
        events.send_to_group_on_commit(room_group(room.pk), events.room_change_event(room_id=room.pk, frame=frame))
        if result.schedule_persist:
            server = all_room_redis_urls().index(room_redis_url(room.pk))
            transaction.on_commit(lambda: persist_enqueue(server=server))
    return result.rev


def room_message_pin_by_ids(*, room_id: int, actor_id: int, seq: int, pinned: bool) -> int:
    """``room_message_pin`` for a caller that holds ids (the WebSocket consumer)."""
    room = Room.objects.filter(pk=room_id).first()
    actor = get_user_model().objects.filter(pk=actor_id, is_active=True).first()
    if room is None or actor is None:
        raise PermissionDenied("Only the room's owner and moderators can moderate it.")
    return room_message_pin(room=room, actor=actor, seq=seq, pinned=pinned)
