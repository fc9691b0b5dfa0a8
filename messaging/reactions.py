"""Emoji reactions: anyone who reads a room puts emoji on its messages and takes them off.

A toggle is one Redis step (messaging.store.reactions) that takes the room's next ``rev``;
the whole summary of the message then goes to the room (a ``reactions`` frame, in the
group's order), and the persistence job copies it to PostgreSQL. Who may react is who may
clap: the consumer's subscription checked it. What may be put on is one emoji (an emoji of
Unicode's list, as the kept ``emoji`` package has it), and each message holds at most
``REACTIONS_MAX_EMOJI_PER_MESSAGE`` distinct emoji, ``REACTIONS_MAX_PER_USER_PER_MESSAGE``
of one user.

Order inside the service, as in messaging.services: the Redis write, the broadcast, the job.
"""

from __future__ import annotations

import asyncio

import emoji as emoji_data
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from messaging.selectors import room_counters
from messaging.services import ActionRefused, persist_enqueue
from messaging.store import changes
from messaging.store import reactions as store
from protocol import events
from protocol.events import room_group
from protocol.wire import reactions_wire
from pubsub_site.redis.client import all_room_redis_urls, room_redis_url

# Longer than any emoji of the list (a family with skin tones is 11 code points): refused
# before the look-up.
EMOJI_MAX_CODE_POINTS = 16
VARIATION_SELECTOR_16 = "\ufe0f"


def emoji_or_refuse(value: object) -> str:
    """``value`` as one fully-qualified emoji (``❤`` becomes ``❤️``), or ActionRefused."""
    if not isinstance(value, str) or not value or len(value) > EMOJI_MAX_CODE_POINTS:
        raise ActionRefused("bad_request", "`emoji` must be one emoji, such as 👍.")
    for candidate in (value, value + VARIATION_SELECTOR_16):
        data = emoji_data.EMOJI_DATA.get(candidate)
        if data is not None and data["status"] == emoji_data.STATUS["fully_qualified"]:
            return candidate
    raise ActionRefused("bad_request", f"`emoji` must be one emoji, such as 👍; {value!r} is not.")


_REFUSALS = {
    changes.NOT_INITIALISED: ("unavailable", "The room's state is being restored; retry."),
    changes.NO_SUCH_MESSAGE: ("not_found", "No such message."),
    changes.ALREADY_DELETED: ("not_found", "The message was deleted."),
}


def _refusal(status: int) -> ActionRefused:
    if status == store.TOO_MANY_EMOJI:
        cap = settings.REACTIONS_MAX_EMOJI_PER_MESSAGE
        return ActionRefused("too_many_reactions", f"A message holds at most {cap} different emoji.")
    if status == store.TOO_MANY_OF_USER:
        cap = settings.REACTIONS_MAX_PER_USER_PER_MESSAGE
        return ActionRefused("too_many_reactions", f"You can put at most {cap} emoji on one message.")
    return ActionRefused(*_REFUSALS[status])


async def message_react(
    *, room_id: int, room_slug: str, seq: int, user_id: int, username: str, emoji: str, on: bool
) -> store.ToggleResult:
    """Put ``emoji`` on message ``seq`` (``on``) or take it off; status 0 when it already was
    so (nothing changes, nothing is broadcast). The caller checked the rights and the emoji
    (``emoji_or_refuse``)."""

    async def attempt(seed: store.ReactionSummary | None = None) -> store.ToggleResult:
        return await store.toggle(
            room_id=room_id,
            seq=seq,
            user_id=user_id,
            username=username,
            emoji=emoji,
            on=on,
            max_emoji=settings.REACTIONS_MAX_EMOJI_PER_MESSAGE,
            max_per_user=settings.REACTIONS_MAX_PER_USER_PER_MESSAGE,
            seed=seed,
        )

    result = await attempt()
    if result.status == changes.NOT_INITIALISED:
        await database_sync_to_async(room_counters)(room_id=room_id)
        result = await attempt()
    if result.status == store.NEEDS_SEED:
        # Redis lost the message's summary (or never had it): PostgreSQL's rows, once.
        seed = await database_sync_to_async(store.summary_from_database)(room_id=room_id, seq=seq)
        result = await attempt(seed)
    if result.status < 0:
        raise _refusal(result.status)
    if result.status == 1:
        frame = reactions_wire(room=room_slug, seq=seq, reactions=result.summary.entries, rev=result.rev)
        await get_channel_layer().group_send(
            room_group(room_id), events.room_change_event(room_id=room_id, frame=frame)
        )
        if result.schedule_persist:
            server = all_room_redis_urls().index(room_redis_url(room_id))
            await asyncio.to_thread(persist_enqueue, server=server)
    return result
