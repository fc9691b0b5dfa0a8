"""First visits to public rooms: the join writes of many subscribes in one statement.

Guarantee: once ``ajoin_public_room`` returns, the user is a member of the room, and what
it returns is their membership row as the database holds it (its role and mute; a row
made meanwhile by another process, or a ban written meanwhile, is what it returns: a ban
refuses the subscriber). The room's open pages hear of a membership made here once, after
its write committed and before its subscriber goes on (as on commit: before the
subscriber joins the room's group). A failed write fails every subscribe of its batch (the
clients are answered with an error and may retry); none is left half made.

Why: every subscribe of a user to a public room they are not in yet joins it (a write).
One at a time, each took a hop to Django's one database thread and four queries there
(the get, the insert in a savepoint, the username, and the broadcast's hop back to the
event loop), so a thousand first visits at once queued for seconds behind each other.
Here the first subscribes that arrive while a batch is being written wait for the next
one. On PostgreSQL a batch is one statement on the event loop (pubsub_site.async_db): it
inserts the rows that are missing and returns every pair's row, telling the ones it made,
and the handshakes make no trip to Django's database thread (through the ORM there, a
batch's own work was 0.17 ms of that thread's CPU a join, measured over 2,850 first visits
in batches of about 40). On SQLite (development) a batch is one transaction through the
ORM in Django's thread: one ``bulk_create`` (conflicts ignored: a row that exists stays as
it is) and one read of the rows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from protocol.events import member_updated_on_commit, members_joined_send
from pubsub_site import async_db
from rooms.models import Membership

logger = logging.getLogger(__name__)

# First visits written in one transaction at most; more wait for the next batch.
BATCH_MAX = 500


@dataclass(frozen=True)
class NewMember:
    """A membership just made (a first visit, an invitation accepted), as the hooks get it."""

    room_id: int
    room_slug: str
    user_id: int
    username: str
    role: str


# What runs once new memberships are committed, with them (one call a batch): the outgoing
# webhooks' ``member_joined`` events (registered by their app). A hook: rooms never imports them.
# A hook may carry an ``aio`` attribute, an async function of the same members: the first
# subscribes' batches (on the event loop) run that instead, so that a batch no hook needs makes
# no trip to Django's database thread.
MEMBERS_JOINED: list[Callable[[list[NewMember]], None]] = []


def members_joined_hooks(members: list[NewMember], hooks: Iterable[Callable] | None = None) -> None:
    """Run the MEMBERS_JOINED hooks, or ``hooks`` (after the commit): a failing one is logged,
    the joins stand."""
    for hook in MEMBERS_JOINED if hooks is None else hooks:
        try:
            hook(members)
        except Exception:
            logger.exception("the joins' hook %s failed for %d members", hook.__qualname__, len(members))


async def amembers_joined_hooks(members: list[NewMember]) -> None:
    """``members_joined_hooks`` from the event loop: each hook's ``aio`` form there, the hooks
    without one in Django's database thread (one trip for them all)."""
    in_thread = []
    for hook in MEMBERS_JOINED:
        aio = getattr(hook, "aio", None)
        if aio is None:
            in_thread.append(hook)
            continue
        try:
            await aio(members)
        except Exception:
            logger.exception("the joins' hook %s failed for %d members", hook.__qualname__, len(members))
    if in_thread:
        await database_sync_to_async(members_joined_hooks)(members, in_thread)


@dataclass(frozen=True)
class Joined:
    """A membership after its join: as the database holds it, and whether this join made it."""

    role: str
    muted_until: datetime | None
    banned: bool
    created: bool


def memberships_join_public(*, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Joined]:
    """Make each user a member of each public room of ``pairs`` ((room id, user id)) they are
    not in yet, in one transaction; return every pair's membership row as it stands after.

    The caller has read that each room is public and that the user had no row in it.
    A row that exists by now (another process's join, a ban) is left as it is: the
    insert ignores conflicts, and ``created`` is true only for the rows this call wrote
    (told by their ``joined_at``, this call's own instant: another process's row made in the
    same microsecond would count as made here too, and its member be announced twice, which
    the member lists take as the same news)."""
    wanted = set(pairs)
    if not wanted:
        return {}
    stamp = timezone.now()
    with transaction.atomic():
        Membership.objects.bulk_create(
            [Membership(room_id=room_id, user_id=user_id, joined_at=stamp) for room_id, user_id in wanted],
            ignore_conflicts=True,
        )
        rows = Membership.objects.filter(
            room_id__in={room_id for room_id, _ in wanted}, user_id__in={user_id for _, user_id in wanted}
        ).values_list("room_id", "user_id", "role", "muted_until", "banned", "joined_at")
        found = {
            (room_id, user_id): Joined(role=role, muted_until=muted, banned=banned, created=joined_at == stamp)
            for room_id, user_id, role, muted, banned, joined_at in rows
            if (room_id, user_id) in wanted
        }
    missing = wanted - found.keys()
    if missing:  # a row made and deleted again between the insert and the read: very unlikely
        raise RuntimeError(f"memberships not found after their insert: {sorted(missing)[:5]}")
    return found


# The columns a join writes itself; every other column of the row gets its field's default,
# as ``Membership(...)`` would give it (or, for a field with only a database default, the
# database's).
_GIVEN = ("room", "user", "joined_at")


@functools.cache
def _defaulted() -> tuple:
    return tuple(
        f
        for f in Membership._meta.concrete_fields
        if not f.primary_key and f.name not in _GIVEN and (f.has_default() or not f.has_db_default())
    )


@functools.cache
def _join_sql() -> str:
    """One statement for a batch of first visits (PostgreSQL): insert the pairs that have no
    row, return each inserted row (made here) and each row that was there (left as it is).

    The rows a concurrent insert committed while this statement waited on their conflict are
    in neither part (the statement's snapshot is older): ``amemberships_join_public`` reads
    those again."""
    meta = Membership._meta
    table = connection.ops.quote_name(meta.db_table)
    col = {f.name: connection.ops.quote_name(f.column) for f in meta.concrete_fields}
    defaulted = _defaulted()
    insert_columns = ", ".join(col[name] for name in (*_GIVEN, *(f.name for f in defaulted)))
    values = ", ".join(f"%s::{f.cast_db_type(connection)}" for f in defaulted)
    returned = ", ".join(col[name] for name in ("room", "user", "role", "muted_until", "banned"))
    existing = ", ".join(f"m.{col[name]}" for name in ("room", "user", "role", "muted_until", "banned"))
    return (
        "WITH q AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[]) AS q(room_id, user_id)), "  # noqa: S608 (the model's names)
        f"made AS (INSERT INTO {table} ({insert_columns}) "
        f"SELECT q.room_id, q.user_id, %s::timestamptz, {values} FROM q "
        f"ON CONFLICT DO NOTHING RETURNING {returned}) "
        f"SELECT {returned}, TRUE FROM made UNION ALL "
        f"SELECT {existing}, FALSE FROM q JOIN {table} m "
        f"ON m.{col['room']} = q.room_id AND m.{col['user']} = q.user_id"
    )


def _join_params(pairs: list[tuple[int, int]]) -> list:
    return [
        [room_id for room_id, _ in pairs],
        [user_id for _, user_id in pairs],
        timezone.now(),
        *(f.get_db_prep_save(f.get_default(), connection) for f in _defaulted()),
    ]


async def amemberships_join_public(*, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Joined]:
    """``memberships_join_public`` from the event loop: on PostgreSQL one statement there
    (``_join_sql``; ``created`` is true exactly for the rows it inserted), elsewhere the ORM's
    transaction in Django's thread."""
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return {}
    if not async_db.native():
        return await database_sync_to_async(memberships_join_public)(pairs=wanted)
    found = {
        (room_id, user_id): Joined(role=role, muted_until=muted, banned=banned, created=made)
        for room_id, user_id, role, muted, banned, made in await async_db.fetchall(_join_sql(), _join_params(wanted))
    }
    missing = [pair for pair in wanted if pair not in found]
    if missing:  # made by another process's join while this one waited on them: read them now
        for room_id, user_id, role, muted, banned, made in await async_db.fetchall(_join_sql(), _join_params(missing)):
            found[(room_id, user_id)] = Joined(role=role, muted_until=muted, banned=banned, created=made)
    if len(found) < len(wanted):  # a row made and deleted again meanwhile: very unlikely
        raise RuntimeError(f"memberships not found after their insert: {[p for p in wanted if p not in found][:5]}")
    return found


def membership_join_public(*, room_id: int, room_slug: str, user_id: int, username: str | None = None) -> Joined:
    """One first visit (synchronous callers): ``memberships_join_public`` for one pair, and
    the room's open pages told on commit when it made the row (``username``: the user's,
    read when not given)."""
    joined = memberships_join_public(pairs=[(room_id, user_id)])[(room_id, user_id)]
    if joined.created:
        if username is None:
            user_model = get_user_model()
            username = user_model.objects.filter(pk=user_id).values_list(user_model.USERNAME_FIELD, flat=True).get()
        member_updated_on_commit(
            room_id=room_id, room_slug=room_slug, user_id=user_id, username=username, role=joined.role
        )
        if MEMBERS_JOINED:
            member = NewMember(
                room_id=room_id, room_slug=room_slug, user_id=user_id, username=username, role=joined.role
            )
            transaction.on_commit(functools.partial(members_joined_hooks, [member]))
    return joined


@dataclass(frozen=True)
class _Visit:
    room_id: int
    room_slug: str
    user_id: int
    username: str


class _JoinBatches:
    """The first visits of one event loop waiting to be written, and the task writing them."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[int, int], tuple[_Visit, asyncio.Future]] = {}
        self.writer: asyncio.Task | None = None

    def join(self, visit: _Visit) -> asyncio.Future:
        key = (visit.room_id, visit.user_id)
        if key in self.waiting:  # another socket of the user, subscribing at the same time
            return self.waiting[key][1]
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        future.add_done_callback(_retrieved)
        self.waiting[key] = (visit, future)
        if self.writer is None:
            self.writer = loop.create_task(self._write())
        return future

    async def _write(self) -> None:
        """Write batches while first visits wait: those that arrive during a write make the next."""
        try:
            # Let the subscribes already under way reach this batch (one turn of the loop).
            await asyncio.sleep(0)
            while self.waiting:
                keys = list(self.waiting)[:BATCH_MAX]
                batch = [self.waiting.pop(key) for key in keys]
                try:
                    found = await amemberships_join_public(pairs=keys)
                except Exception as error:
                    for _, future in batch:
                        future.set_exception(error)
                    continue
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                # Committed: the rooms' open pages list the new members, told before the
                # subscribers go on (as on commit, before they join the rooms' groups).
                try:
                    await _tell_joined(
                        [(visit, found[key]) for key, (visit, _) in zip(keys, batch, strict=True) if found[key].created]
                    )
                finally:  # the joins stand, told or not
                    for key, (_, future) in zip(keys, batch, strict=True):
                        future.set_result(found[key])
        finally:
            self.writer = None
            for _, future in self.waiting.values():  # only when cancelled: the loop is ending
                future.cancel()
            self.waiting.clear()


def _retrieved(future: asyncio.Future) -> None:
    """A failed join whose subscriber is gone (its socket closed) must not log 'never retrieved'."""
    if not future.cancelled():
        future.exception()


async def _tell_joined(made: list[tuple[_Visit, Joined]]) -> None:
    """The rooms' open pages list their new members: one event a room."""
    by_room: dict[int, tuple[str, list[tuple[int, str, str]]]] = {}
    for visit, joined in made:
        by_room.setdefault(visit.room_id, (visit.room_slug, []))[1].append((visit.user_id, visit.username, joined.role))
    for room_id, (room_slug, members) in by_room.items():
        try:
            await members_joined_send(room_id=room_id, room_slug=room_slug, members=members)
        except (RedisError, OSError) as error:  # the joins stand; the member lists miss them until reloaded
            logger.warning("could not tell room %s of %d new members: %r", room_id, len(members), error)
    if MEMBERS_JOINED and made:
        new = [
            NewMember(room_id=v.room_id, room_slug=v.room_slug, user_id=v.user_id, username=v.username, role=j.role)
            for v, j in made
        ]
        await amembers_joined_hooks(new)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _JoinBatches] = weakref.WeakKeyDictionary()


async def ajoin_public_room(*, room_id: int, room_slug: str, user_id: int, username: str) -> Joined:
    """Join the public room (its first visit by the user), written with the other first
    visits of the moment in one batch; the room's open pages are told after the commit."""
    loop = asyncio.get_running_loop()
    batches = _by_loop.get(loop)
    if batches is None:
        batches = _by_loop[loop] = _JoinBatches()
    future = batches.join(_Visit(room_id=room_id, room_slug=room_slug, user_id=user_id, username=username))
    return await asyncio.shield(future)
