"""Reads of rooms with their permission checks: the only place room access is decided."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from rooms.models import Membership, Room


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


def room_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """Public rooms and the user's own (not banned), with their member counts."""
    mine = Q(memberships__user=user, memberships__banned=False)
    banned_from = Membership.objects.filter(user=user, banned=True).values("room_id")
    return (
        Room.objects.filter(Q(visibility=Room.Visibility.PUBLIC) | mine)
        .exclude(pk__in=banned_from)
        .annotate(member_count=Count("memberships", filter=Q(memberships__banned=False), distinct=True))
        .distinct()
        .order_by("name")
    )


def room_members(*, room: Room) -> QuerySet[Membership]:
    return room.memberships.filter(banned=False).select_related("user").order_by("role", "user__username")
