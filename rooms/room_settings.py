"""The room's own settings: its name, its topic, archiving it and deleting it.

Like the moderation acts (rooms.moderation), these are checked here, recorded in the
AuditLog in the same transaction, and reach the room's open pages on commit
(`room_updated`; a deletion ends every member's subscription with `kicked`).

Who may do what:
- the owner and the moderators rename the room and edit its topic;
- only the owner archives it (read-only, out of the room list), brings it back, and
  deletes it, naming it to confirm;
- site staff, from the admin (``acting_as_staff=True``), have the owner's powers;
- a direct conversation has none of these (its people are equals, named by the page).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from protocol import events
from rooms.models import AuditLog, Membership, Room
from rooms.moderation import audit_record, authority_for, room_for_update
from rooms.services import _refuse_invisible_controls, room_name_taken

NAME_MAX = Room._meta.get_field("name").max_length
TOPIC_MAX = Room._meta.get_field("topic").max_length


def _owner_only(authority, verb: str) -> None:
    if not authority.is_owner:
        raise PermissionDenied(f"Only the room's owner can {verb} it.")


def _copy(source: Room, target: Room, fields: list[str]) -> Room:
    for name in fields:
        setattr(target, name, getattr(source, name))
    return target


def room_rename(
    *, room: Room, actor: AbstractBaseUser, name: str, reason: str = "", acting_as_staff: bool = False
) -> Room:
    """Give the room a new name (its address stays: open pages and links keep working)."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "A room needs a name."})
    if len(name) > NAME_MAX:
        raise ValidationError({"name": f"A room name has at most {NAME_MAX} characters."})
    _refuse_invisible_controls(field="name", label="A room name", value=name)
    try:
        with transaction.atomic():
            authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
            current = room_for_update(room)
            if current.name == name:
                raise ValidationError({"name": f"The room is already called {name}."})
            if room_name_taken(name=name, user=actor, exclude_pk=current.pk):
                raise ValidationError({"name": "A room with this name already exists."})
            before = current.name
            current.name = name
            current.save(update_fields=["name"])
            details = f"{before} → {name}"
            audit_record(authority, room=current, action=AuditLog.Action.RENAME, reason=_with(details, reason))
            events.room_updated_on_commit(room=current)
    except IntegrityError:
        # Another room took the name between the check and the update.
        raise ValidationError({"name": "A room with this name already exists."}) from None
    return _copy(current, room, ["name"])


def room_set_topic(
    *, room: Room, actor: AbstractBaseUser, topic: str, reason: str = "", acting_as_staff: bool = False
) -> Room:
    """Set the room's topic; an empty one removes it."""
    topic = (topic or "").strip()
    if len(topic) > TOPIC_MAX:
        raise ValidationError({"topic": f"A topic has at most {TOPIC_MAX} characters."})
    _refuse_invisible_controls(field="topic", label="A topic", value=topic)
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        current = room_for_update(room)
        if current.topic == topic:
            raise ValidationError({"topic": "The topic is already this."})
        current.topic = topic
        current.save(update_fields=["topic"])
        details = f"“{topic}”" if topic else "removed"
        audit_record(authority, room=current, action=AuditLog.Action.EDIT_TOPIC, reason=_with(details, reason))
        events.room_updated_on_commit(room=current)
    return _copy(current, room, ["topic"])


def _set_archived(*, room: Room, actor: AbstractBaseUser, archived: bool, reason: str, acting_as_staff: bool) -> Room:
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        _owner_only(authority, "archive" if archived else "unarchive")
        current = room_for_update(room)
        if current.archived == archived:
            raise ValidationError("The room is already archived." if archived else "The room is not archived.")
        current.archived = archived
        current.save(update_fields=["archived"])
        action = AuditLog.Action.ARCHIVE if archived else AuditLog.Action.UNARCHIVE
        audit_record(authority, room=current, action=action, reason=reason)
        # The subscribers' cached rights (nobody posts in an archived room), then the pages.
        events.room_state_changed_on_commit(room=current)
        events.room_updated_on_commit(room=current)
    return _copy(current, room, ["archived"])


def room_archive(*, room: Room, actor: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False) -> Room:
    """The room becomes read-only and leaves the room list; its members still read it."""
    return _set_archived(room=room, actor=actor, archived=True, reason=reason, acting_as_staff=acting_as_staff)


def room_unarchive(*, room: Room, actor: AbstractBaseUser, reason: str = "", acting_as_staff: bool = False) -> Room:
    return _set_archived(room=room, actor=actor, archived=False, reason=reason, acting_as_staff=acting_as_staff)


# What a room's deletion lets go of after its commit, given the room's id: its state in
# Redis (messaging.store.watermarks.forget_room, registered by messaging.apps). A hook, not
# an import: rooms' domain code does not import messaging.
AFTER_DELETE: list[Callable[..., None]] = []


def room_delete(
    *, room: Room, actor: AbstractBaseUser, confirm: str, reason: str = "", acting_as_staff: bool = False
) -> None:
    """Delete the room with its messages, for good. ``confirm`` must be the room's name
    (whatever its case): a deletion is never one click. The audit entry outlives the room
    (it names it); every member's open pages are told, and its Redis state is dropped."""
    with transaction.atomic():
        authority = authority_for(room=room, actor=actor, acting_as_staff=acting_as_staff)
        _owner_only(authority, "delete")
        current = room_for_update(room)
        if (confirm or "").strip().lower() != current.name.lower():
            raise ValidationError({"confirm": f"Type the room's name, {current.name}, to delete it."})
        details = f"{current.name} ({current.slug})"
        audit_record(authority, room=current, action=AuditLog.Action.DELETE_ROOM, reason=_with(details, reason))
        who = "staff" if authority.as_staff else actor.get_username()
        member_ids = list(Membership.objects.filter(room=current, banned=False).values_list("user_id", flat=True))
        for user_id in member_ids:
            events.user_kicked_on_commit(user_id=user_id, room=current, reason=f"{current.name} was deleted by {who}.")
        room_id = current.pk
        current.delete()
        for forget in AFTER_DELETE:
            transaction.on_commit(functools.partial(forget, room_id=room_id))


def _with(details: str, reason: str) -> str:
    reason = (reason or "").strip()
    return f"{details}: {reason}" if reason else details
