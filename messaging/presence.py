"""Who is online in a room, across web processes and tabs, in Redis.

Each connection subscribed to a room holds one entry ``user_id|username|kind|channel``
in the room's ``presence`` sorted set, scored by when it expires. Each web process
refreshes its connections' entries every ``PRESENCE_HEARTBEAT`` seconds (``PresenceKeeper``);
entries of a process that died without saying goodbye expire after ``PRESENCE_TTL`` and
the next sweep (by any live process with a subscriber in the room) announces those users'
leave. A user is online while any of their entries is; two tabs are one person.

A big room (an audience of thousands) is told how many people are online and the names of
at most PRESENCE_LIST_MAX of them; who came and went is announced at most once a
PRESENCE_COALESCE_SECONDS per room and web process (messaging.services.presence_broadcast),
so filling a room costs O(N) presence frames, not O(N²).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from messaging import metrics
from messaging.buffer import LuaScript, RoomKeys
from pubsub_site.redis_client import get_async_redis

logger = logging.getLogger(__name__)

# Does the user (ARGV[1] .. '|') still have a live entry (score > ARGV[2])?
_HAS_LIVE = """
local function has_live(key, prefix, now)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')) do
    if string.sub(m, 1, #prefix) == prefix then return true end
  end
  return false
end
"""

# KEYS: presence, the room's seq and rev; ARGV: member, expiry, now, user prefix.
# Returns {1 when the user came online else 0, seq, rev, the live members...}: a
# subscribe needs the room's counters and who is online next, in the same round trip.
JOIN_SCRIPT = (
    _HAS_LIVE
    + """
local came = 1
if has_live(KEYS[1], ARGV[4], ARGV[3]) then came = 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local reply = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')
table.insert(reply, 1, redis.call('GET', KEYS[3]) or '')
table.insert(reply, 1, redis.call('GET', KEYS[2]) or '')
table.insert(reply, 1, came)
return reply
"""
)

# KEYS: presence; ARGV: member, now, user prefix. Returns 1 when the user went offline.
LEAVE_SCRIPT = (
    _HAS_LIVE
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if has_live(KEYS[1], ARGV[3], ARGV[2]) then return 0 end
return 1
"""
)

# KEYS: presence; ARGV: now. Drops expired entries; returns the members of users now offline.
SWEEP_SCRIPT = (
    _HAS_LIVE
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #expired == 0 then return {} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local gone, seen = {}, {}
for _, m in ipairs(expired) do
  local uid = string.match(m, '^([^|]+)|')
  if uid and not seen[uid] then
    seen[uid] = true
    if not has_live(KEYS[1], uid .. '|', ARGV[1]) then table.insert(gone, m) end
  end
end
return gone
"""
)


async def every_heartbeat(
    beat: Callable[[], Awaitable[None]], what: str, *, on_failure: Callable[[], object] = lambda: None
) -> None:
    """Call ``beat`` every PRESENCE_HEARTBEAT seconds, for ever. A Redis failure is logged and
    counted; the next beat tries again (entries live PRESENCE_TTL, several beats)."""
    while True:
        await asyncio.sleep(settings.PRESENCE_HEARTBEAT)
        try:
            await beat()
        except RedisError:
            on_failure()
            logger.warning("%s heartbeat failed", what, exc_info=True)


def member_key(*, user_id: int, username: str, spectator: bool, channel: str) -> str:
    return f"{user_id}|{username}|{'s' if spectator else 'p'}|{channel}"


def user_from_member(member: str | bytes) -> dict:
    if isinstance(member, bytes):
        member = member.decode()
    user_id, username, kind, _ = member.split("|", 3)
    return {"id": int(user_id), "username": username, "spectator": kind == "s"}


def _now() -> float:
    return time.time()


_join = LuaScript(JOIN_SCRIPT)
_leave = LuaScript(LEAVE_SCRIPT)
_sweep = LuaScript(SWEEP_SCRIPT)


@dataclass(frozen=True)
class Joined:
    came_online: bool  # the user had no other live entry in the room
    online: Online  # who is online now, the joiner included
    counters: tuple[int, int] | None  # the room's (seq, rev), None when Redis holds none


async def join(*, room_id: int, member: str) -> Joined:
    """Add the entry, and read who is online and the room's counters in the same call."""
    now = _now()
    prefix = member.split("|", 1)[0] + "|"
    keys = RoomKeys(room_id)
    reply = await _join.arun(
        get_async_redis(room_id),
        keys=(keys.presence, keys.seq, keys.rev),
        args=(member, now + settings.PRESENCE_TTL, now, prefix),
    )
    came, seq, rev, *members = reply
    users = _users_of(members)
    return Joined(
        came_online=bool(int(came)),
        online=Online(users=_capped(list(users.values())), count=len(users)),
        counters=(int(seq), int(rev or 0)) if seq else None,
    )


async def leave(*, room_id: int, member: str) -> bool:
    prefix = member.split("|", 1)[0] + "|"
    reply = await _leave.arun(
        get_async_redis(room_id), keys=(RoomKeys(room_id).presence,), args=(member, _now(), prefix)
    )
    return bool(int(reply))


async def heartbeat(*, entries: dict[int, set[str]]) -> None:
    """Push back the expiry of live entries (room id -> members): one command per room."""
    expiry = _now() + settings.PRESENCE_TTL
    for room_id, members in entries.items():
        if members:
            await get_async_redis(room_id).zadd(RoomKeys(room_id).presence, dict.fromkeys(members, expiry), xx=True)


class PresenceKeeper:
    """This process's presence entries, one per subscribed socket, kept alive together.

    Every PRESENCE_HEARTBEAT seconds one task refreshes them all (one ZADD per room) and
    sweeps each room once for entries that expired (a process that died), calling
    ``on_gone(room_id, users)`` for the users who left that way. One task and one sweep
    per room and process, where each socket used to have a task of its own and sweep
    every room it was in.
    """

    def __init__(self, on_gone: Callable[[int, list[dict]], Awaitable[None]]) -> None:
        self.on_gone = on_gone
        self.entries: dict[int, set[str]] = {}
        self.task: asyncio.Task | None = None

    def add(self, room_id: int, member: str) -> None:
        self.entries.setdefault(room_id, set()).add(member)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="presence keeper")

    def discard(self, room_id: int, member: str) -> None:
        members = self.entries.get(room_id)
        if members is not None:
            members.discard(member)
            if not members:
                del self.entries[room_id]

    async def _run(self) -> None:
        await every_heartbeat(self.beat, "presence", on_failure=metrics.PRESENCE_FAILURES.inc)

    async def beat(self) -> None:
        entries = {room_id: set(members) for room_id, members in self.entries.items()}
        await heartbeat(entries=entries)
        for room_id in entries:
            gone = await sweep(room_id=room_id)
            metrics.PRESENCE_SWEEPS.inc()
            if gone:
                metrics.PRESENCE_EXPIRED.inc(len(gone))
                await self.on_gone(room_id, gone)


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceKeeper] = weakref.WeakKeyDictionary()


def keeper(*, on_gone: Callable[[int, list[dict]], Awaitable[None]]) -> PresenceKeeper:
    """The running loop's keeper (made with ``on_gone`` the first time)."""
    loop = asyncio.get_running_loop()
    found = _keepers.get(loop)
    if found is None:
        found = _keepers[loop] = PresenceKeeper(on_gone)
    return found


async def sweep(*, room_id: int) -> list[dict]:
    """Users whose every entry expired: they left without saying goodbye."""
    gone = await _sweep.arun(get_async_redis(room_id), keys=(RoomKeys(room_id).presence,), args=(_now(),))
    return [user_from_member(m) for m in gone]


@dataclass(frozen=True)
class Online:
    """Who is online in a room: ``users`` (at most PRESENCE_LIST_MAX people, participants
    first, each group by name) out of ``count`` people."""

    users: list[dict]
    count: int


async def _live_users(room_id: int) -> dict[int, dict]:
    return _users_of(await get_async_redis(room_id).zrangebyscore(RoomKeys(room_id).presence, f"({_now()}", "+inf"))


def _users_of(members: list) -> dict[int, dict]:
    users: dict[int, dict] = {}
    for member in members:
        user = user_from_member(member)
        # A participant's tab wins over a spectator's for the same user.
        if user["id"] not in users or not user["spectator"]:
            users[user["id"]] = user
    return users


def _capped(users: list[dict]) -> list[dict]:
    ordered = sorted(users, key=lambda u: (u["spectator"], u["username"].lower()))
    return ordered[: settings.PRESENCE_LIST_MAX]


async def changes(*, room_id: int, users: dict[int, dict]) -> tuple[list[dict], list[dict], int]:
    """Of ``users`` (id -> user) who came or went lately: those online now (joins), those
    not (leaves), each list capped, and how many people are online."""
    live = await _live_users(room_id)
    joins = [live[user_id] for user_id in users if user_id in live]
    leaves = [user for user_id, user in users.items() if user_id not in live]
    return _capped(joins), _capped(leaves), len(live)
