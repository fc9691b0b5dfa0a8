"""Writes to rooms and memberships. Views, consumers, jobs and the admin call these."""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from rooms.models import Membership, Room


def _unique_slug(name: str) -> str:
    base = slugify(name)[:90] or "room"
    slug, n = base, 1
    while Room.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


# Characters that reorder the text around them: a name could pass for another one.
_DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refuse_invisible_controls(*, field: str, label: str, value: str) -> None:
    if any(ch in _DIRECTION_CONTROLS or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValidationError({field: f"{label} cannot contain control or text-direction characters."})


def room_create(
    *, creator: AbstractBaseUser, name: str, topic: str = "", visibility: str = Room.Visibility.PUBLIC
) -> Room:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A room needs a name."})
    _refuse_invisible_controls(field="name", label="A room name", value=name)
    _refuse_invisible_controls(field="topic", label="A topic", value=topic)
    if Room.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": "A room with this name already exists."})
    try:
        with transaction.atomic():
            room = Room.objects.create(
                name=name, slug=_unique_slug(name), topic=topic.strip(), visibility=visibility, created_by=creator
            )
            Membership.objects.create(room=room, user=creator, role=Membership.Role.OWNER)
    except IntegrityError:
        # Another request took the name (or slug) between the check and the insert.
        raise ValidationError({"name": "A room with this name already exists."}) from None
    return room


def _public_room_membership(*, room: Room, user: AbstractBaseUser, role: str, private_refusal: str) -> Membership:
    """The user's membership, creating one with ``role`` in a public room."""
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is not None:
        if membership.banned:
            raise PermissionDenied("You are banned from this room.")
        return membership
    if not room.is_public:
        raise PermissionDenied(private_refusal)
    membership, _ = Membership.objects.get_or_create(room=room, user=user, defaults={"role": role})
    return membership


def room_join(*, room: Room, user: AbstractBaseUser) -> Membership:
    """Join a public room (or return the existing membership)."""
    return _public_room_membership(
        room=room,
        user=user,
        role=Membership.Role.MEMBER,
        private_refusal="This room is private: ask a moderator to invite you.",
    )


def room_leave(*, room: Room, user: AbstractBaseUser) -> None:
    membership = Membership.objects.filter(room=room, user=user, banned=False).first()
    if membership is None:
        return
    if membership.role == Membership.Role.OWNER:
        raise ValidationError("The owner cannot leave the room.")
    membership.delete()
    from messaging.events import user_kicked_on_commit

    user_kicked_on_commit(user_id=user.pk, room=room, reason="You left the room.")


def room_invite(*, room: Room, by: AbstractBaseUser, username: str) -> Membership:
    inviter = Membership.objects.filter(room=room, user=by).first()
    if inviter is None or not inviter.can_moderate:
        raise PermissionDenied("Only the owner and moderators can invite.")
    invitee = get_user_model().objects.filter(username__iexact=username.strip()).first()
    if invitee is None:
        raise ValidationError({"username": "There is no user with this name."})
    membership, created = Membership.objects.get_or_create(room=room, user=invitee)
    if not created:
        if membership.banned:
            raise ValidationError({"username": f"{invitee.username} is banned from this room."})
        raise ValidationError({"username": f"{invitee.username} is already a member."})
    return membership


class RoomNotFound(Exception):
    """No such room, or a private one the user may not know of."""


class RoomBanned(Exception):
    """The user is banned from the room."""


@dataclass(frozen=True)
class RoomAccess:
    """A subscriber's rights in a room, cached by the consumer for the subscription."""

    room_id: int
    slug: str
    role: str
    locked: bool
    muted_until: datetime | None
    # The room's slow mode: seconds a member waits between two messages; 0 is off.
    slow_mode_seconds: int = 0

    def is_muted(self) -> bool:
        return self.muted_until is not None and self.muted_until > timezone.now()

    @property
    def can_post(self) -> bool:
        return self.role != Membership.Role.SPECTATOR

    @property
    def can_moderate(self) -> bool:
        return self.role in {Membership.Role.OWNER, Membership.Role.MODERATOR}


def _columns(model) -> dict[str, str]:
    return {f.name: f.column for f in model._meta.concrete_fields}


@functools.cache
def _room_access_sql() -> str:
    """The room by slug, LEFT JOINed with one user's membership. Written out once (names from
    the models): every subscribe runs it, and building it through the ORM cost 0.8 ms of
    CPU each time, ten times what PostgreSQL spends on it."""
    r, m = _columns(Room), _columns(Membership)
    return (
        f'SELECT r."{r["id"]}", r."{r["slug"]}", r."{r["visibility"]}", r."{r["locked"]}", '  # noqa: S608 (model names)
        f'r."{r["slow_mode_seconds"]}", m."{m["id"]}", m."{m["role"]}", m."{m["banned"]}", m."{m["muted_until"]}" '
        f'FROM "{Room._meta.db_table}" r LEFT JOIN "{Membership._meta.db_table}" m '
        f'ON m."{m["room"]}" = r."{r["id"]}" AND m."{m["user"]}" = %s WHERE r."{r["slug"]}" = %s'
    )


def room_access_for_subscriber(*, slug: str, user_id: int) -> RoomAccess:
    """Check the user may read the room, joining it when it is public.

    Every subscribe runs this (a reconnect storm, thousands at once): one query reads the
    room joined with the user's membership; the join of a public room adds the others."""
    with connection.cursor() as cursor:
        cursor.execute(_room_access_sql(), [user_id, slug])
        row = cursor.fetchone()
    if row is None:
        raise RoomNotFound
    room_id, slug, visibility, locked, slow_mode_seconds, membership_id, role, banned, muted_until = row
    if muted_until is not None and timezone.is_naive(muted_until):
        # SQLite (development) hands a raw query naive UTC datetimes; the ORM would make them aware.
        muted_until = timezone.make_aware(muted_until, UTC)
    if membership_id is None:
        if visibility != Room.Visibility.PUBLIC:
            raise RoomNotFound
        membership, _ = Membership.objects.get_or_create(room_id=room_id, user_id=user_id)
        role, muted_until = membership.role, membership.muted_until
    elif banned:
        raise RoomBanned
    return RoomAccess(
        room_id=room_id,
        slug=slug,
        role=role,
        locked=locked,
        muted_until=muted_until,
        slow_mode_seconds=slow_mode_seconds,
    )


def room_watch(*, room: Room, user: AbstractBaseUser) -> Membership:
    """Join a public room as a spectator: read and clap, but not post."""
    return _public_room_membership(
        room=room, user=user, role=Membership.Role.SPECTATOR, private_refusal="Only public rooms can be watched."
    )


def room_participate(*, room: Room, user: AbstractBaseUser) -> Membership:
    """Turn a spectator (or a newcomer to a public room) into a participant."""
    membership = room_join(room=room, user=user)
    if membership.role == Membership.Role.SPECTATOR:
        membership.role = Membership.Role.MEMBER
        membership.save(update_fields=["role"])
        from messaging.events import membership_changed_on_commit

        membership_changed_on_commit(user_id=user.pk, room=room)
    return membership


def room_ids_for_user(*, user_id: int) -> dict[int, tuple[str, int]]:
    """The rooms the user belongs to (not banned): id -> (slug, last read seq in PostgreSQL)."""
    rows = Membership.objects.filter(user_id=user_id, banned=False).values_list(
        "room_id", "room__slug", "last_read_seq"
    )
    return {room_id: (slug, last_read) for room_id, slug, last_read in rows}
