"""A member's own notification settings for a room: what they hear of it, and snoozing it.

Only the member changes their settings, and only for a room they belong to (a public room's
reader without a membership has the default, "mentions only", until they join). A change
reaches the user's other open pages on commit: a ``notify_settings`` frame to the user's
group (protocol.wire.notify_settings_frame), which their sidebars and room pages apply.
What the settings mean is messaging.notifications.preferences; this module only writes them.

Not the moderation mute (``Membership.muted_until``, rooms.moderation): that one stops a
member posting; this one is the member's own choice to hear less.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from protocol import events
from protocol.wire import notify_settings_frame
from rooms.models import Membership, Room

# The snoozes offered ("mute for 1 hour"...): name -> label. "tomorrow" ends at this hour of
# the next day, in the member's time zone.
SNOOZES = {"1h": "For 1 hour", "8h": "For 8 hours", "tomorrow": "Until tomorrow"}
TOMORROW_AT = time(8, 0)


def snooze_end(choice: str, *, now: datetime | None = None, tz_name: str = "") -> datetime:
    """When a snooze chosen now ends; ValidationError for a choice not offered."""
    now = now or timezone.now()
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "8h":
        return now + timedelta(hours=8)
    if choice == "tomorrow":
        try:
            zone = zoneinfo.ZoneInfo(tz_name or settings.TIME_ZONE)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
        local = now.astimezone(zone)
        return datetime.combine(local.date() + timedelta(days=1), TOMORROW_AT, tzinfo=zone)
    raise ValidationError({"snooze": f"Choose one of: {', '.join(SNOOZES)}, or unmute."})


def _membership_for_update(*, room: Room, user: AbstractBaseUser) -> Membership:
    membership = Membership.objects.select_for_update().filter(room=room, user=user, banned=False).first()
    if membership is None:
        # Not a member (or banned): nothing to set. Answered as for a room that is not there.
        raise Http404("You are not a member of this room.")
    return membership


def _announce(*, user_id: int, room: Room, membership: Membership) -> None:
    frame = notify_settings_frame(
        room=room.slug, level=membership.notify_level, snoozed_until=membership.notifications_snoozed_until
    )
    events.send_to_group_on_commit(events.user_group(user_id), events.user_notify_event(frame=frame))


def membership_notify_level_set(*, room: Room, user: AbstractBaseUser, level: str) -> Membership:
    """Hear "all" of the room, "mentions" only, or "nothing"."""
    if level not in Membership.NotifyLevel.values:
        raise ValidationError({"level": "Choose all messages, mentions only, or nothing."})
    with transaction.atomic():
        membership = _membership_for_update(room=room, user=user)
        if membership.notify_level != level:
            membership.notify_level = level
            membership.save(update_fields=["notify_level"])
        _announce(user_id=user.pk, room=room, membership=membership)
    return membership


def membership_snooze(*, room: Room, user: AbstractBaseUser, until: datetime | None) -> Membership:
    """Hear nothing of the room until ``until``; None (or a time past) unmutes it now."""
    if until is not None and until <= timezone.now():
        until = None
    with transaction.atomic():
        membership = _membership_for_update(room=room, user=user)
        membership.notifications_snoozed_until = until
        membership.save(update_fields=["notifications_snoozed_until"])
        _announce(user_id=user.pk, room=room, membership=membership)
    return membership
