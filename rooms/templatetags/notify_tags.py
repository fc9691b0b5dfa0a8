"""How a member's notification settings for a room show (rooms.notify_settings): the room's
control, the settings page and the sidebar's badges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django import template

from rooms.models import Membership

register = template.Library()


@dataclass(frozen=True)
class NotifyState:
    level: str
    snoozed_until: datetime | None

    @property
    def quiet(self) -> bool:
        """Nothing to hear: no count badge, a muted style."""
        return self.level == Membership.NotifyLevel.NOTHING or self.snoozed_until is not None

    @property
    def label(self) -> str:
        return Membership.NotifyLevel(self.level).label


DEFAULT = NotifyState(level=Membership.NotifyLevel.MENTIONS, snoozed_until=None)


@register.filter
def notify_state(membership: Membership | None) -> NotifyState:
    """{{ membership|notify_state }}: the default for a reader without a membership."""
    if membership is None:
        return DEFAULT
    return NotifyState(level=membership.notify_level, snoozed_until=membership.snoozed_until())


@register.filter
def notify_for(room, memberships: dict) -> NotifyState:
    """{{ room|notify_for:notify_by_room }}: the state of the user's membership of ``room``."""
    return notify_state((memberships or {}).get(room.pk))


@register.filter
def mentions_for(room, mentions_by_room: dict) -> str:
    """{{ room|mentions_for:mentions_by_room }}: the seqs of the room's unread mentions, space-separated."""
    return " ".join(map(str, (mentions_by_room or {}).get(room.pk, ())))
