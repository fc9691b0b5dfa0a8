"""Reads of rooms with their permission checks: the only place room access is decided."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404

from rooms.models import AuditLog, Membership, Report, Room, RoomSlugAlias


def membership_get(*, room: Room, user: AbstractBaseUser) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(room=room, user=user).first()


def room_can_read(*, room: Room, membership: Membership | None) -> bool:
    if membership is not None and membership.banned:
        return False
    return room.is_public or membership is not None


def room_get_for_reader(*, slug: str, user: AbstractBaseUser) -> tuple[Room, Membership | None]:
    """The room and the user's membership, or 404 when the user may not read it.

    A private room the user is not in answers exactly like a room that does not
    exist, so its name never leaks.
    """
    room = Room.objects.filter(slug=slug).select_related("created_by").first()
    if room is None:
        raise Http404("No such room.")
    membership = membership_get(room=room, user=user)
    if not room_can_read(room=room, membership=membership):
        raise Http404("No such room.")
    return room, membership


def room_moved_for_reader(*, slug: str, user: AbstractBaseUser) -> Room | None:
    """The room that had the address ``slug`` before (rooms.models.RoomSlugAlias), when the
    user may read it; None otherwise (an outsider learns nothing of it)."""
    alias = RoomSlugAlias.objects.filter(slug=slug).select_related("room").first()
    if alias is None:
        return None
    room = alias.room
    return room if room_can_read(room=room, membership=membership_get(room=room, user=user)) else None


def room_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """Public rooms and the user's own (not banned), with their member counts: every member
    of the room (not banned), whoever looks. The rooms are chosen by subqueries, not a join
    on the memberships, which would leave only the viewer's own to count."""
    mine = Membership.objects.filter(user=user, banned=False).values("room_id")
    banned_from = Membership.objects.filter(user=user, banned=True).values("room_id")
    members = (
        Membership.objects.filter(room=OuterRef("pk"), banned=False)
        .order_by()
        .values("room")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return (
        Room.objects.filter(Q(visibility=Room.Visibility.PUBLIC) | Q(pk__in=mine), kind=Room.Kind.ROOM, archived=False)
        .exclude(pk__in=banned_from)
        .annotate(member_count=Coalesce(Subquery(members, output_field=IntegerField()), 0))
        .order_by("name")
    )


def archived_rooms_of_user(*, user: AbstractBaseUser) -> list[Room]:
    """The archived rooms the user belongs to (not banned): the room list names them apart."""
    return list(
        Room.objects.filter(kind=Room.Kind.ROOM, archived=True, memberships__user=user, memberships__banned=False)
        .order_by("name")
        .only("name", "slug")
    )


def rooms_of_user(*, user: AbstractBaseUser) -> list[Room]:
    """The rooms (not direct conversations, not archived) the user belongs to, not banned: the sidebar."""
    return list(
        Room.objects.filter(kind=Room.Kind.ROOM, archived=False, memberships__user=user, memberships__banned=False)
        .order_by("name")
        .only("name", "slug")
    )


def directs_of_user(*, user: AbstractBaseUser) -> list[Room]:
    """The user's direct conversations, each with ``title``: the other people's names (sorted),
    as the user sees it. Newest first."""
    others = (
        Membership.objects.filter(banned=False)
        .exclude(user=user)
        .select_related("user")
        .only("room_id", "user__username")
    )
    rooms = (
        Room.objects.filter(kind=Room.Kind.DIRECT, memberships__user=user, memberships__banned=False)
        .order_by("-created_at", "-pk")
        .only("name", "slug", "kind", "created_at")
        .prefetch_related(Prefetch("memberships", queryset=others, to_attr="others"))
    )
    for room in rooms:
        room.title = _names(m.user.get_username() for m in room.others)
    return list(rooms)


def _names(usernames) -> str:
    return ", ".join(sorted(usernames, key=str.lower)) or "Only you"


def room_title_for(*, room: Room, user: AbstractBaseUser) -> str:
    """What the user sees as the room's name: a direct conversation is named after the others in it."""
    if not room.is_direct:
        return room.name
    return _names(room.memberships.filter(banned=False).exclude(user=user).values_list("user__username", flat=True))


def direct_banned_members(*, room: Room) -> list[str]:
    """The people of a direct conversation banned from the site (inactive): it is then read-only."""
    if not room.is_direct:
        return []
    return sorted(room.memberships.filter(user__is_active=False).values_list("user__username", flat=True))


def room_ids_readable_by(*, user: AbstractBaseUser) -> list[int]:
    """The ids of every room the user may read, as ``room_can_read`` decides: public rooms and
    the user's own, less those they are banned from. Search relies on it (messaging/search/).
    A direct conversation is private: only its members read it."""
    if not user.is_authenticated:
        return []
    banned_by_room = dict(Membership.objects.filter(user=user).values_list("room_id", "banned"))
    public = Room.objects.filter(visibility=Room.Visibility.PUBLIC).values_list("pk", flat=True)
    readable = {pk for pk in public if not banned_by_room.get(pk, False)}
    readable.update(pk for pk, banned in banned_by_room.items() if not banned)
    return sorted(readable)


def notify_settings_of_user(*, user: AbstractBaseUser, room_ids: list[int]) -> dict[int, Membership]:
    """The user's memberships of these rooms (not banned) with their notification settings
    (rooms.notify_settings), by room id: the sidebar's badges and the settings page."""
    rows = Membership.objects.filter(user=user, room_id__in=room_ids, banned=False).only(
        "room_id", "user_id", "notify_level", "notifications_snoozed_until"
    )
    return {m.room_id: m for m in rows}


def room_members(*, room: Room) -> QuerySet[Membership]:
    # With the profile: the member list shows display names, avatars and statuses.
    # And whether they are a bot (api.models.BotAccount): the list's BOT badge.
    return (
        room.memberships.filter(banned=False)
        .select_related("user__profile", "user__bot_account")
        .order_by("role", "user__username")
    )


def room_get_for_moderator(*, slug: str, user: AbstractBaseUser) -> tuple[Room, Membership]:
    """The room and the user's membership when the user moderates it.

    404 when the user may not read the room (as for any reader), 403 when they
    read it but are neither its owner nor one of its moderators.
    """
    room, membership = room_get_for_reader(slug=slug, user=user)
    if membership is None or not membership.can_moderate:
        raise PermissionDenied("Only the room's owner and moderators can moderate it.")
    return room, membership


_ROLE_RANK = Case(
    When(role=Membership.Role.OWNER, then=Value(0)),
    When(role=Membership.Role.MODERATOR, then=Value(1)),
    When(role=Membership.Role.MEMBER, then=Value(2)),
    default=Value(3),
    output_field=IntegerField(),
)


def room_members_for_moderation(*, room: Room) -> QuerySet[Membership]:
    """Every membership of the room, banned ones too: owner, moderators, members, spectators, then the banned."""
    return (
        room.memberships.select_related("user")
        .annotate(role_rank=_ROLE_RANK)
        .order_by("banned", "role_rank", "user__username")
    )


def user_find(*, username: str) -> AbstractBaseUser | None:
    """The user with this username, whatever its case."""
    username = username.strip()
    if not username:
        return None
    return get_user_model().objects.filter(username__iexact=username).first()


def report_count_open(*, room: Room) -> int:
    return room.reports.filter(status=Report.Status.OPEN).count()


def report_get_for_room(*, room: Room, report_id: int) -> Report:
    report = Report.objects.filter(room=room, pk=report_id).select_related("room", "reporter").first()
    if report is None:
        raise Http404("No such report.")
    return report


def audit_log_for_room(*, room: Room) -> QuerySet[AuditLog]:
    """The room's moderation history, newest first."""
    return AuditLog.objects.filter(room=room).select_related("actor", "target").order_by("-created_at", "-pk")


def membership_is_actionable_by(*, target: Membership, actor: Membership) -> bool:
    """Whether ``actor`` may act on ``target`` at all; the moderation services decide each act."""
    if not actor.can_moderate or target.user_id == actor.user_id or target.role == Membership.Role.OWNER:
        return False
    return target.role != Membership.Role.MODERATOR or actor.role == Membership.Role.OWNER
