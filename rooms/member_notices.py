"""New members told to their rooms' open pages: the first at once, the rest of a burst together.

Guarantee: every membership a first visit makes (rooms.joins) is told to the room's
subscribers (``member_updated``, protocol.events.members_joined_send) by this process:

- a room that heard of no new member from this process within the last
  ``MEMBERS_JOINED_COALESCE_SECONDS`` hears of the new ones at once, before their
  subscribers go on;
- while it did, the next ones wait for the end of that interval and go out together, in one
  event, with their membership as the database holds it then: a member who left or was banned
  meanwhile is not told (their ``member_left`` went out at once), and a role changed meanwhile
  is told as it is now (its own ``member_updated`` went out at once too).

A process that stops within the interval takes the new members still waiting with it: they
are members, and the pages list them at their next load or next subscription (the details
revision their subscription starts from is then behind theirs).

Why: in a room that fills at once (a reconnect storm's first visits, a class joining a
lesson), each batch of first visits was told to everyone already in, so each member heard of
each one who came after, one frame at a time: up to 190 frames for a room of 20, and in the
benchmark's 1,000 first visits at once that was most of what a first visit cost more than a
return (docs/benchmarks.md, issue 26).
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from protocol.events import members_joined_send
from rooms.selectors import member_roles

logger = logging.getLogger(__name__)


class _Notices:
    """The new members waiting to be told, per room, on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Rooms told within the current interval: room id -> (slug, {user id: username}) of
        # the members that joined since, told when the interval ends.
        self.intervals: dict[int, tuple[str, dict[int, str]]] = {}
        self.sending: set[asyncio.Task] = set()

    async def tell(self, *, room_id: int, room_slug: str, members: list[tuple[int, str, str]]) -> None:
        waiting = self.intervals.get(room_id)
        if waiting is not None:
            waiting[1].update((user_id, username) for user_id, username, _ in members)
            return
        self.intervals[room_id] = (room_slug, {})
        self.loop.call_later(settings.MEMBERS_JOINED_COALESCE_SECONDS, self._interval_ended, room_id)
        await _send(room_id=room_id, room_slug=room_slug, members=members)

    def _interval_ended(self, room_id: int) -> None:
        room_slug, waiting = self.intervals.pop(room_id)
        if not waiting:
            return
        # Another interval starts: what joins while these are told waits for its end.
        self.intervals[room_id] = (room_slug, {})
        self.loop.call_later(settings.MEMBERS_JOINED_COALESCE_SECONDS, self._interval_ended, room_id)
        task = self.loop.create_task(_send_current(room_id=room_id, room_slug=room_slug, waiting=waiting))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)


async def _send(*, room_id: int, room_slug: str, members: list[tuple[int, str, str]]) -> None:
    try:
        await members_joined_send(room_id=room_id, room_slug=room_slug, members=members)
    except (RedisError, OSError) as error:  # the joins stand; the member lists miss them until reloaded
        logger.warning("could not tell room %s of %d new members: %r", room_id, len(members), error)


async def _send_current(*, room_id: int, room_slug: str, waiting: dict[int, str]) -> None:
    """Tell the members that waited, as their memberships are now."""
    try:
        roles = await database_sync_to_async(member_roles)(room_id=room_id, user_ids=list(waiting))
    except DatabaseError as error:
        logger.warning("could not read the %d new members of room %s: %r", len(waiting), room_id, error)
        return
    members = [(user_id, username, roles[user_id]) for user_id, username in waiting.items() if user_id in roles]
    if members:
        await _send(room_id=room_id, room_slug=room_slug, members=members)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Notices] = weakref.WeakKeyDictionary()


async def members_joined_tell(*, room_id: int, room_slug: str, members: list[tuple[int, str, str]]) -> None:
    """Tell the room's open pages of its new members ((user id, username, role) each, their
    memberships committed): at once, or with the others at the end of the room's interval."""
    loop = asyncio.get_running_loop()
    notices = _by_loop.get(loop)
    if notices is None:
        notices = _by_loop[loop] = _Notices(loop)
    await notices.tell(room_id=room_id, room_slug=room_slug, members=members)
