"""Reads of accounts: who may see whose profile card.

Rule: a person's card is shown to themselves and to anyone who shares a room with them
(both members, neither banned: a public room's visitors who did not join see no cards).
Anyone else gets nothing, the same as for an id that does not exist.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.models import Profile
from rooms.models import Membership


@dataclass(frozen=True)
class ProfileCard:
    user_id: int
    username: str
    display_name: str
    avatar_url: str
    status: str
    time_zone: str
    local_time: datetime | None

    @property
    def name(self) -> str:
        return self.display_name or self.username


def shares_a_room(*, viewer: AbstractBaseUser, user_id: int) -> bool:
    if viewer.pk == user_id:
        return True
    viewer_rooms = Membership.objects.filter(user=viewer, banned=False).values("room_id")
    return Membership.objects.filter(user_id=user_id, banned=False, room_id__in=viewer_rooms).exists()


def avatar_url(profile: Profile | None) -> str:
    return default_storage.url(profile.avatar) if profile is not None and profile.avatar else ""


def current_status(profile: Profile | None, *, now: datetime | None = None) -> str:
    """The status, unless its expiry passed (it is cleared by nobody: read as gone)."""
    if profile is None or not profile.status:
        return ""
    if profile.status_expires_at is not None and profile.status_expires_at <= (now or timezone.now()):
        return ""
    return profile.status


def profile_card_for(*, viewer: AbstractBaseUser, user_id: int) -> ProfileCard | None:
    """The card of ``user_id`` as ``viewer`` may see it, or None (see the module's rule)."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not shares_a_room(viewer=viewer, user_id=user.pk):
        return None
    profile = Profile.objects.filter(user=user).first()
    tz_name = (profile.time_zone if profile else "") or settings.TIME_ZONE
    return ProfileCard(
        user_id=user.pk,
        username=user.username,
        display_name=profile.display_name if profile else "",
        avatar_url=avatar_url(profile),
        status=current_status(profile),
        time_zone=tz_name,
        local_time=timezone.now().astimezone(zoneinfo.ZoneInfo(tz_name)),
    )


def profiles_by_user_id(user_ids: list[int]) -> dict[int, Profile]:
    """The profiles of a member list, in one query."""
    return {p.user_id: p for p in Profile.objects.filter(user_id__in=user_ids)}
