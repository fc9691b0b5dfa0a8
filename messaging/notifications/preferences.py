"""Who a new message should notify, by each reader's notification settings for the room.

The one place that reads ``Membership.notify_level`` and ``notifications_snoozed_until``: the
mention notifications, the e-mail digests, Web Push and the unread badges all ask here, so a
room set to "nothing" (or snoozed) is silent on every channel at once.

The rules:
- a member chooses, per room, "all" messages, "mentions" only (the default) or "nothing";
- snoozing ("mute for 1 hour") means "nothing" until the time passes;
- a reader of a public room with no membership row has the default, "mentions";
- in a direct conversation every message counts as a mention: "mentions" hears them all;
- the author is never notified of their own message, and nobody who cannot read the room
  (a banned member, an outsider of a private room, an inactive account) is ever named.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from rooms.models import Membership, Room

ALL = Membership.NotifyLevel.ALL.value
MENTIONS = Membership.NotifyLevel.MENTIONS.value
NOTHING = Membership.NotifyLevel.NOTHING.value

# Why a message notifies someone (the values of ``recipients``), strongest first.
REASON_MENTION = "mention"
REASON_DIRECT = "direct"
REASON_MESSAGE = "message"


def is_snoozed(membership: Membership | None, *, now: datetime | None = None) -> bool:
    return membership is not None and membership.snoozed_until(now) is not None


def effective_level(membership: Membership | None, *, room: Room, now: datetime | None = None) -> str:
    """The member's level for the room as it stands now: "nothing" while snoozed, "mentions"
    for a reader without a membership row (a public room's passer-by), else their choice.

    ``room`` is the membership's room (given so that a missing row still has one); in a direct
    conversation "mentions" already hears every message (``should_notify``)."""
    if membership is None:
        return MENTIONS
    if is_snoozed(membership, now=now):
        return NOTHING
    return membership.notify_level


def should_notify(membership: Membership | None, *, room: Room, mentioned: bool, now: datetime | None = None) -> bool:
    """Whether a message in ``room`` (mentioning the member or not) should notify them.

    Readability is the caller's business (``recipients`` checks it); this is the setting alone."""
    level = effective_level(membership, room=room, now=now)
    if level == ALL:
        return True
    if level == MENTIONS:
        return mentioned or room.is_direct
    return False


def recipients(*, room: Room, author_id: int, mentioned_user_ids: set[int]) -> dict[int, str]:
    """Every reader of ``room`` whom a new message by ``author_id`` mentioning
    ``mentioned_user_ids`` should notify, by their settings: user id -> reason, one of
    "mention", "direct" (a direct conversation's message) or "message" (a member at "all").

    Two queries at most, whatever the room's size: the memberships that can matter (the
    mentioned, those at "all", and in a direct conversation everyone), then, in a public room,
    which mentioned people with no membership row are active accounts."""
    return recipients_by_message(room=room, messages=[(author_id, set(mentioned_user_ids))])[0]


def recipients_by_message(*, room: Room, messages: list[tuple[int, set[int]]]) -> list[dict[int, str]]:
    """``recipients`` of each of a batch of messages of ``room``, given as (author id,
    mentioned user ids): the same two queries at most for the whole batch."""
    now = timezone.now()
    everyone_mentioned = set().union(*(mentioned for _, mentioned in messages)) if messages else set()
    matters = Q() if room.is_direct else Q(user_id__in=everyone_mentioned) | Q(notify_level=ALL)
    rows = {
        m.user_id: m
        for m in Membership.objects.filter(matters, room=room, user__is_active=True).only(
            "user_id", "room_id", "banned", "notify_level", "notifications_snoozed_until"
        )
    }
    # Readers without a row have the default, "mentions": in a public room they hear of their mentions.
    passers_by: set[int] = set()
    unknown = everyone_mentioned - rows.keys()
    if unknown and room.is_public:
        passers_by = set(get_user_model().objects.filter(pk__in=unknown, is_active=True).values_list("pk", flat=True))
    found_by_message = []
    for author_id, mentioned in messages:
        mentioned = mentioned - {author_id}
        found: dict[int, str] = {}
        for user_id, membership in rows.items():
            if user_id == author_id or membership.banned:
                continue  # banned: cannot read the room, hears nothing of it
            is_mentioned = user_id in mentioned
            if not should_notify(membership, room=room, mentioned=is_mentioned, now=now):
                continue
            if is_mentioned:
                found[user_id] = REASON_MENTION
            elif room.is_direct:
                found[user_id] = REASON_DIRECT
            else:
                found[user_id] = REASON_MESSAGE
        found.update(dict.fromkeys(mentioned & passers_by, REASON_MENTION))
        found_by_message.append(found)
    return found_by_message
