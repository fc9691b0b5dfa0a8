"""Writes to rooms and memberships. Views, consumers, jobs and the admin call these."""

from __future__ import annotations

import functools
import operator
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import Truncator, slugify

from protocol.events import (
    direct_joined_on_commit,
    member_left_on_commit,
    member_updated_on_commit,
    membership_changed_on_commit,
    user_kicked_on_commit,
)
from pubsub_site import async_db
from rooms.joins import (
    MEMBERS_JOINED,
    Joined,
    NewMember,
    ajoin_public_room,
    members_joined_hooks,
    membership_join_public,
)
from rooms.models import Membership, Room, RoomSlugAlias


def _unique_slug(name: str, *, private: bool = False) -> str:
    """A public room's slug is its name's (``-2``, ``-3``... after the first); a private room's
    carries a random part too, so that it never holds the slug a public room of the same name
    would get: the suffix a creator is given must say nothing of rooms they cannot see."""
    base = slugify(name)[:90] or "room"
    if private:
        while True:
            slug = f"{base}-{secrets.token_hex(4)}"
            if not Room.objects.filter(slug=slug).exists():
                return slug
    slug, n = base, 1
    # Not an old address either (rooms.models.RoomSlugAlias): that one leads elsewhere.
    while Room.objects.filter(slug=slug).exists() or RoomSlugAlias.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


# Characters that reorder the text around them: a name could pass for another one.
_DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refuse_invisible_controls(*, field: str, label: str, value: str) -> None:
    if any(ch in _DIRECTION_CONTROLS or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValidationError({field: f"{label} cannot contain control or text-direction characters."})


def room_name_taken(*, name: str, user: AbstractBaseUser, exclude_pk: int | None = None) -> bool:
    """Whether a room ``user`` can see already has ``name`` (any case). Only such a room may
    refuse a name: a private room they are not in says nothing (its name is not unique: see
    Room.Meta), whether they create a room or rename one."""
    visible = Q(visibility=Room.Visibility.PUBLIC) | Q(memberships__user=user, memberships__banned=False)
    return Room.objects.filter(visible, kind=Room.Kind.ROOM, name__iexact=name).exclude(pk=exclude_pk).exists()


def room_create(
    *, creator: AbstractBaseUser, name: str, topic: str = "", visibility: str = Room.Visibility.PUBLIC
) -> Room:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A room needs a name."})
    _refuse_invisible_controls(field="name", label="A room name", value=name)
    _refuse_invisible_controls(field="topic", label="A topic", value=topic)
    if room_name_taken(name=name, user=creator):
        raise ValidationError({"name": "A room with this name already exists."})
    private = visibility != Room.Visibility.PUBLIC
    try:
        with transaction.atomic():
            room = Room.objects.create(
                name=name,
                slug=_unique_slug(name, private=private),
                topic=topic.strip(),
                visibility=visibility,
                created_by=creator,
            )
            Membership.objects.create(room=room, user=creator, role=Membership.Role.OWNER)
    except IntegrityError:
        # Another request took the name (or slug) between the check and the insert.
        raise ValidationError({"name": "A room with this name already exists."}) from None
    return room


DEFAULT_ROOM_TOPIC = "Everyone starts here: say hello."


def room_welcome(*, user: AbstractBaseUser) -> Room | None:
    """Put a new account in the site's default room (``settings.DEFAULT_ROOM``, by name):
    the room it lands in. The room is made, public, when it does not exist yet (its maker owns
    it, as any room's). None when there is no default room, or it is archived or private."""
    name = settings.DEFAULT_ROOM
    if not name:
        return None
    for _ in range(2):
        room = Room.objects.filter(kind=Room.Kind.ROOM, name__iexact=name).first()
        if room is None:
            try:
                return room_create(creator=user, name=name, topic=DEFAULT_ROOM_TOPIC)
            except ValidationError:
                continue  # made by someone else meanwhile: join theirs
        if room.archived or not room.is_public:
            return None
        try:
            room_join(room=room, user=user)
        except PermissionDenied:
            return None
        return room
    return None


def _public_room_membership(*, room: Room, user: AbstractBaseUser, role: str, private_refusal: str) -> Membership:
    """The user's membership, creating one with ``role`` in a public room."""
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is not None:
        if membership.banned:
            raise PermissionDenied("You are banned from this room.")
        return membership
    if not room.is_public:
        raise PermissionDenied(private_refusal)
    membership, created = Membership.objects.get_or_create(room=room, user=user, defaults={"role": role})
    if created:
        member_joined_tell(membership)
    return membership


def member_updated_tell(membership: Membership, *, room_slug: str | None = None, username: str | None = None) -> None:
    """The room's open pages list the member (joined, or with a new role)."""
    member_updated_on_commit(
        room_id=membership.room_id,
        room_slug=room_slug or membership.room.slug,
        user_id=membership.user_id,
        username=username or membership.user.get_username(),
        role=membership.role,
    )


def member_joined_tell(membership: Membership, *, room_slug: str | None = None, username: str | None = None) -> None:
    """Someone joined the room: its open pages list them, and the MEMBERS_JOINED hooks run on
    commit (rooms.joins)."""
    room_slug = room_slug or membership.room.slug
    username = username or membership.user.get_username()
    member_updated_tell(membership, room_slug=room_slug, username=username)
    if MEMBERS_JOINED:
        member = NewMember(
            room_id=membership.room_id,
            room_slug=room_slug,
            user_id=membership.user_id,
            username=username,
            role=membership.role,
        )
        transaction.on_commit(functools.partial(members_joined_hooks, [member]))


def _tell_member_left(*, room: Room, user: AbstractBaseUser) -> None:
    member_left_on_commit(room=room, user_id=user.pk, username=user.get_username())


def room_join(*, room: Room, user: AbstractBaseUser) -> Membership:
    """Join a public room (or return the existing membership)."""
    return _public_room_membership(
        room=room,
        user=user,
        role=Membership.Role.MEMBER,
        private_refusal="This room is private: ask a moderator to invite you.",
    )


# A direct conversation: its opener and up to 7 others.
DIRECT_MAX_MEMBERS = 8


def direct_slug(usernames: list[str]) -> str:
    """A direct conversation's address: its people's names, then a random suffix (the same
    people may have had another conversation's address, a renamed user someone else's)."""
    names = slugify("-".join(sorted(usernames, key=str.lower)))[:80].strip("-") or "direct"
    return f"{names}-{secrets.token_hex(4)}"


def _free_direct_slug(usernames: list[str]) -> str:
    while True:
        slug = direct_slug(usernames)
        if not Room.objects.filter(slug=slug).exists() and not RoomSlugAlias.objects.filter(slug=slug).exists():
            return slug


def direct_key(user_ids) -> str:
    """The key of a direct conversation: its people's ids, sorted. The same people, the same key."""
    return ",".join(str(pk) for pk in sorted(set(user_ids)))


def direct_open(*, opener: AbstractBaseUser, usernames: list[str]) -> Room:
    """The direct conversation of ``opener`` with these users: the existing one if these very
    people already have one (whoever left it comes back), else a new one.

    Refused when anyone in it is banned from the site (an inactive account: this site has no
    other site-wide ban), when a name is unknown, or past DIRECT_MAX_MEMBERS people.
    """
    wanted = {name.strip().lstrip("@").lower() for name in usernames if name.strip().lstrip("@")}
    wanted.discard(opener.get_username().lower())
    if not wanted:
        raise ValidationError({"usernames": "Name at least one other person."})
    if len(wanted) > DIRECT_MAX_MEMBERS - 1:
        others = DIRECT_MAX_MEMBERS - 1
        raise ValidationError(
            {"usernames": f"A conversation has at most {DIRECT_MAX_MEMBERS} people: you and {others} others."}
        )
    user_model = get_user_model()
    candidates = user_model.objects.annotate(name_ci=Lower(user_model.USERNAME_FIELD)).filter(name_ci__in=wanted)
    found = {u.get_username().lower(): u for u in candidates}
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValidationError({"usernames": f"There is no user named {', '.join(missing)}."})
    people = [opener, *sorted(found.values(), key=lambda u: u.get_username().lower())]
    banned = [u.get_username() for u in people if not u.is_active]
    if banned:
        raise ValidationError(
            {
                "usernames": f"{', '.join(banned)} {'is' if len(banned) == 1 else 'are'} banned from the site: "
                "no direct messages with them."
            }
        )
    key = direct_key(u.pk for u in people)
    for _ in range(2):
        room = Room.objects.filter(dm_key=key).first()
        if room is None:
            try:
                with transaction.atomic():
                    room = Room.objects.create(
                        kind=Room.Kind.DIRECT,
                        dm_key=key,
                        visibility=Room.Visibility.PRIVATE,
                        # The page names a conversation after the others; this name is for the admin.
                        name=Truncator(", ".join(sorted((u.get_username() for u in people), key=str.lower))).chars(80),
                        # The address names the people in it (what the page shows), made unique.
                        slug=_free_direct_slug([u.get_username() for u in people]),
                        created_by=opener,
                    )
                    Membership.objects.bulk_create(
                        [Membership(room=room, user=u, role=Membership.Role.MEMBER) for u in people]
                    )
                    _tell_direct_joined(room=room, people=people, joined=people)
            except IntegrityError:
                continue  # the same people opened it at the same moment: take theirs
            return room
        # Who left comes back: the same people mean the same conversation, with its history.
        with transaction.atomic():
            present = set(Membership.objects.filter(room=room).values_list("user_id", flat=True))
            back = [u for u in people if u.pk not in present]
            Membership.objects.bulk_create(
                [Membership(room=room, user=u, role=Membership.Role.MEMBER) for u in back], ignore_conflicts=True
            )
            _tell_direct_joined(room=room, people=people, joined=back)
        return room
    raise ValidationError({"usernames": "The conversation could not be opened; try again."})


def _tell_direct_joined(*, room: Room, people: list[AbstractBaseUser], joined: list[AbstractBaseUser]) -> None:
    for user in joined:
        title = ", ".join(sorted((u.get_username() for u in people if u.pk != user.pk), key=str.lower))
        direct_joined_on_commit(user_id=user.pk, room=room, title=title)
        member_updated_on_commit(
            room_id=room.pk, room_slug=room.slug, user_id=user.pk, username=user.get_username(), role="member"
        )


def room_leave(*, room: Room, user: AbstractBaseUser) -> None:
    membership = Membership.objects.filter(room=room, user=user, banned=False).first()
    if membership is None:
        return
    if membership.role == Membership.Role.OWNER:
        raise ValidationError("The owner cannot leave the room.")
    membership.delete()
    user_kicked_on_commit(user_id=user.pk, room=room, reason="You left the room.")
    _tell_member_left(room=room, user=user)


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
def _room_access_sql(*, many: bool = False) -> str:
    """The room by slug, LEFT JOINed with one user's membership. Written out once (names from
    the models): every subscribe runs it, and building it through the ORM cost 0.8 ms of
    CPU each time, ten times what PostgreSQL spends on it. ``many``: for arrays of slugs
    and user ids (the subscribes that wait together), each row led by its slug and user id."""
    r, m = _columns(Room), _columns(Membership)
    user_model = get_user_model()
    u = _columns(user_model)
    # A direct conversation with someone banned from the site (an inactive account) is read-only.
    direct_blocked = (
        f'CASE WHEN r."{r["kind"]}" = %s THEN EXISTS (SELECT 1 FROM '  # noqa: S608 (model names)
        f'"{Membership._meta.db_table}" o JOIN "{user_model._meta.db_table}" u ON u."{u["id"]}" = o."{m["user"]}" '
        f'WHERE o."{m["room"]}" = r."{r["id"]}" AND NOT u."{u["is_active"]}") ELSE FALSE END'
    )
    columns = (
        f'r."{r["id"]}", r."{r["slug"]}", r."{r["visibility"]}", (r."{r["locked"]}" OR r."{r["archived"]}"), '
        f'r."{r["slow_mode_seconds"]}", m."{m["id"]}", m."{m["role"]}", m."{m["banned"]}", m."{m["muted_until"]}", '
        f"{direct_blocked}"
    )
    if many:
        return (
            f"SELECT q.slug, q.user_id, {columns} "  # noqa: S608 (model names)
            f"FROM unnest(%s::text[], %s::bigint[]) AS q(slug, user_id) "
            f'JOIN "{Room._meta.db_table}" r ON r."{r["slug"]}" = q.slug '
            f'LEFT JOIN "{Membership._meta.db_table}" m '
            f'ON m."{m["room"]}" = r."{r["id"]}" AND m."{m["user"]}" = q.user_id'
        )
    return (
        f"SELECT {columns} "  # noqa: S608 (model names)
        f'FROM "{Room._meta.db_table}" r LEFT JOIN "{Membership._meta.db_table}" m '
        f'ON m."{m["room"]}" = r."{r["id"]}" AND m."{m["user"]}" = %s WHERE r."{r["slug"]}" = %s'
    )


def room_access_for_subscriber(*, slug: str, user_id: int) -> RoomAccess:
    """Check the user may read the room, joining it when it is public.

    Every subscribe runs this (a reconnect storm, thousands at once): one query reads the
    room joined with the user's membership; the join of a public room adds the others."""
    row = _room_access_row(slug=slug, user_id=user_id)
    if not _joins(row):
        return _room_access(row)
    return _room_access(row, joined=membership_join_public(room_id=row[0], room_slug=row[1], user_id=user_id))


def _room_access_row(*, slug: str, user_id: int) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(_room_access_sql(), [Room.Kind.DIRECT.value, user_id, slug])
        return cursor.fetchone()


async def aroom_access_for_subscriber(*, slug: str, user_id: int, username: str) -> RoomAccess:
    """``room_access_for_subscriber`` from a consumer (``username``: the subscriber's): its
    read on the event loop (pubsub_site.async_db; on another database than PostgreSQL, in
    Django's thread), and a first visit to a public room, which writes the membership,
    written with the other first visits of the moment (rooms.joins)."""
    if async_db.native():
        if not _could_be_slug(slug):
            raise RoomNotFound  # and it does not fail the read of the subscribes it would go with
        rows = await async_db.fetchall_together(
            _room_access_sql(many=True),
            (slug, user_id),
            params=_access_params,
            key_of=operator.itemgetter(0, 1),
        )
        row = rows[0][2:] if rows else None
    else:
        row = await database_sync_to_async(_room_access_row)(slug=slug, user_id=user_id)
    if not _joins(row):
        return _room_access(row)
    joined = await ajoin_public_room(room_id=row[0], room_slug=row[1], user_id=user_id, username=username)
    return _room_access(row, joined=joined)


def _could_be_slug(slug: str) -> bool:
    """Whether a room could have this slug: PostgreSQL takes no NUL, nor a lone surrogate."""
    if len(slug) > Room._meta.get_field("slug").max_length or "\x00" in slug:
        return False
    try:
        slug.encode()
    except UnicodeEncodeError:
        return False
    return True


def _access_params(keys: list[tuple[str, int]]) -> list:
    """``_room_access_sql(many=True)``'s parameters for (slug, user id) pairs."""
    return [Room.Kind.DIRECT.value, [slug for slug, _ in keys], [user_id for _, user_id in keys]]


def _joins(row: tuple | None) -> bool:
    """Whether ``_room_access_sql``'s row is a public room the user is not in yet: reading
    it makes them a member (a write)."""
    return row is not None and row[5] is None and row[2] == Room.Visibility.PUBLIC


def _room_access(row: tuple | None, *, joined: Joined | None = None) -> RoomAccess:
    """The access ``_room_access_sql``'s row gives, or, for a public room the user was not
    in (``_joins``), the membership its join left (``joined``: a ban written meanwhile wins)."""
    if row is None:
        raise RoomNotFound
    room_id, slug, visibility, locked, slow_mode_seconds, membership_id, role, banned, muted_until, blocked = row
    muted_until = async_db.row_datetime(muted_until)
    if membership_id is None:
        if visibility != Room.Visibility.PUBLIC or joined is None:
            raise RoomNotFound
        role, muted_until, banned = joined.role, joined.muted_until, joined.banned
    if banned:
        raise RoomBanned
    return RoomAccess(
        room_id=room_id,
        slug=slug,
        role=role,
        locked=bool(locked or blocked),
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
        membership_changed_on_commit(user_id=user.pk, room=room)
        member_updated_tell(membership)
    return membership


def room_ids_for_user(*, user_id: int) -> dict[int, tuple[str, int]]:
    """The rooms the user belongs to (not banned): id -> (slug, last read seq in PostgreSQL)."""
    rows = Membership.objects.filter(user_id=user_id, banned=False).values_list(
        "room_id", "room__slug", "last_read_seq"
    )
    return {room_id: (slug, last_read) for room_id, slug, last_read in rows}
