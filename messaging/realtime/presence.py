"""Who is online in a room, across web processes and tabs, in Redis.

Each connection subscribed to a room holds one entry ``user_id|username|kind|channel``
in the room's ``presence`` sorted set, scored by when it expires. Each web process
refreshes its connections' entries every ``PRESENCE_HEARTBEAT`` seconds (``PresenceKeeper``);
entries of a process that died without saying goodbye expire after ``PRESENCE_TTL`` and
the next sweep (by any live process with a subscriber in the room) announces those users'
leave. A user is online while the room holds any of their entries (until a sweep, an
expired one too: nobody has been told they left); two tabs are one person. The room's
``presence_users`` hash counts each user's entries, so that joining, leaving and counting
cost the same in a room of ten and in one of ten thousand. Both keys live at least as long as
their newest entry (every join and heartbeat pushes back their expiry to PRESENCE_TTL and a
second): a room whose every process died, or whose last live process left before the dead
ones' entries expired, keeps nothing in Redis once those entries have expired.

A big room (an audience of thousands) is told how many people are online and the names of
at most PRESENCE_LIST_MAX of them (in a room of more, a sample: the list is not a ranking);
who came and went is announced at most once a PRESENCE_COALESCE_SECONDS per room, however
many web processes its members are spread over (``presence_broadcast``, below): the
processes leave their news in the room's ``presence_news`` hash, and whichever takes the
room's ``presence_told`` lease first tells everything there is. So filling a room costs
O(N) presence frames, not O(N²) nor O(N x processes), and O(N) work in Redis. (Once a
second per process, 100,000 sockets over 7 processes connecting made 7 presence frames a
second for each member of a room still filling: 3,000 a second and process for each
member of a room of 3,000.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from messaging import metrics
from messaging.services import coalescer_for
from messaging.store.keys import RoomKeys
from messaging.store.lua import LuaScript
from messaging.store.script_batch import run_batched
from protocol import events
from protocol.events import room_group
from pubsub_site.redis.client import get_async_redis

logger = logging.getLogger(__name__)

# Every script keeps KEYS[2], the room's hash of user id -> number of entries, equal to what
# KEYS[1] holds: a user is online while their count is above 0, the room has HLEN users
# online, and no script scans the room's entries to know either (scanning made a room's
# filling O(N²): 6,000 sockets joining one room took 101 s).

# KEYS: presence, presence users, the room's seq, rev and details revision; ARGV: member,
# expiry, now, user id, the list's cap, the keys' lifetime (ms; never shortened), 1 when the
# caller has a sample of this room already. Returns {1 when the user came online else 0, seq,
# rev, details, users online, live entries...}: every live entry when the room has at most `cap` people, else
# the first 4 x cap (a sample: the list names at most `cap` people), or none when the caller
# has a sample. A subscribe needs the counters and who is online next, in the same round trip.
JOIN_SCRIPT = """
local came = 0
if redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[4], 1) == 1 then came = 1 end
end
local lifetime = tonumber(ARGV[6])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < lifetime then redis.call('PEXPIRE', KEYS[i], lifetime) end
end
local count = redis.call('HLEN', KEYS[2])
local reply
if count <= tonumber(ARGV[5]) then
  reply = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')
elseif ARGV[7] == '1' then
  reply = {}
else
  reply = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf', 'LIMIT', 0, 4 * tonumber(ARGV[5]))
end
table.insert(reply, 1, count)
table.insert(reply, 1, redis.call('GET', KEYS[5]) or '0')
table.insert(reply, 1, redis.call('GET', KEYS[4]) or '')
table.insert(reply, 1, redis.call('GET', KEYS[3]) or '')
table.insert(reply, 1, came)
return reply
"""

# KEYS: presence, presence users; ARGV: member, user id. Returns 1 when the user went offline.
LEAVE_SCRIPT = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: presence, presence users; ARGV: expiry, now, the keys' lifetime (ms), this process's
# live members of the room... A process's heartbeat of one room in one call: its entries'
# expiry pushed back (XX: an entry a sweep already dropped stays gone), the keys' lifetime
# too, then the sweep: entries that expired (a process that died) are dropped. Returns the
# members of the users who are offline now (their every entry expired).
BEAT_SCRIPT = """
for i = 4, #ARGV, 500 do
  local scored = {}
  for j = i, math.min(i + 499, #ARGV) do
    scored[#scored + 1] = ARGV[1]
    scored[#scored + 1] = ARGV[j]
  end
  redis.call('ZADD', KEYS[1], 'XX', unpack(scored))
end
local lifetime = tonumber(ARGV[3])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < lifetime then redis.call('PEXPIRE', KEYS[i], lifetime) end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if #expired == 0 then return {} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local gone = {}
for _, m in ipairs(expired) do
  local uid = string.match(m, '^([^|]+)|')
  if uid and redis.call('HINCRBY', KEYS[2], uid, -1) <= 0 then
    redis.call('HDEL', KEYS[2], uid)
    table.insert(gone, m)
  end
end
return gone
"""


# KEYS: presence users, presence news, presence told; ARGV: the interval (ms), the news'
# lifetime (ms), then user id and user (JSON) pairs: this process's news of the room. Leaves
# them with the others', then, unless the room was told within the interval (the lease is
# another process's), takes the lease and every news. Returns {0} when there is no news, {1,
# ms until the lease is free} when another process told the room lately, else {2, users
# online, {user id, user...}, {each user's entries or nil}}.
TELL_SCRIPT = """
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if redis.call('EXISTS', KEYS[2]) == 0 then return {0} end
if not redis.call('SET', KEYS[3], '1', 'PX', ARGV[1], 'NX') then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, redis.call('PTTL', KEYS[3])}
end
local news = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
local counts = {}
for i = 1, #news, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, #news), 2 do ids[#ids + 1] = news[j] end
  local part = redis.call('HMGET', KEYS[1], unpack(ids))
  for j = 1, #part do counts[#counts + 1] = part[j] end
end
return {2, redis.call('HLEN', KEYS[1]), news, counts}
"""


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
_tell = LuaScript(TELL_SCRIPT)
_beat = LuaScript(BEAT_SCRIPT)


@dataclass(frozen=True)
class Joined:
    came_online: bool  # the user had no other live entry in the room
    online: Online  # who is online now, the joiner included
    counters: tuple[int, int] | None  # the room's (seq, rev), None when Redis holds none
    details: int  # the room's details revision (protocol.details)


# A big room's sample of who is online (room id -> (when it was read, the capped list)),
# shown to the subscribers of this process that arrive within SAMPLE_SECONDS of its read:
# 3,000 people joining a room each read and parsed 400 entries, 23% of the web processes'
# CPU while they connected (docs/benchmarks.md, 2026-12-06 evening).
SAMPLE_SECONDS = 1.0
_samples: dict[int, tuple[float, list[dict]]] = {}


async def join(*, room_id: int, member: str) -> Joined:
    """Add the entry, and read who is online and the room's counters in the same call. In a
    room of more than PRESENCE_LIST_MAX people, the list (a sample then) is read at most once
    a SAMPLE_SECONDS per process; a smaller room's is read every time, exact."""
    now = _now()
    keys = RoomKeys(room_id)
    sample = _samples.get(room_id)
    if sample is not None and now - sample[0] >= SAMPLE_SECONDS:
        sample = None
    reply = await run_batched(
        get_async_redis(room_id),
        _join,
        keys=(keys.presence, keys.presence_users, keys.seq, keys.rev, keys.details),
        args=(
            member,
            now + settings.PRESENCE_TTL,
            now,
            _user_id_of(member),
            settings.PRESENCE_LIST_MAX,
            _lifetime_ms(),
            1 if sample is not None else 0,
        ),
    )
    came, seq, rev, details, count, *members = reply
    count = int(count)
    if count > settings.PRESENCE_LIST_MAX and not members and sample is not None:
        users = sample[1]
    else:
        users = _capped(list(_users_of(members).values()))
        if count > settings.PRESENCE_LIST_MAX:
            _keep_sample(room_id, now, users)
    return Joined(
        came_online=bool(int(came)),
        online=Online(users=users, count=count),
        counters=(int(seq), int(rev or 0)) if seq else None,
        details=int(details),
    )


def _keep_sample(room_id: int, now: float, users: list[dict]) -> None:
    if len(_samples) >= 1000:  # rooms whose sample is old are forgotten
        for stale in [r for r, (at, _) in _samples.items() if now - at >= SAMPLE_SECONDS]:
            del _samples[stale]
    _samples[room_id] = (now, users)


async def leave(*, room_id: int, member: str) -> bool:
    keys = RoomKeys(room_id)
    reply = await run_batched(
        get_async_redis(room_id), _leave, keys=(keys.presence, keys.presence_users), args=(member, _user_id_of(member))
    )
    return bool(int(reply))


def _user_id_of(member: str) -> str:
    return member.split("|", 1)[0]


def _lifetime_ms() -> int:
    """How long a room's presence keys outlive their latest write: their entries' PRESENCE_TTL
    and a second (Redis's clock and this process's need not agree to the millisecond)."""
    return (settings.PRESENCE_TTL + 1) * 1000


async def heartbeat(*, entries: dict[int, set[str]]) -> dict[int, list[dict]]:
    """Push back the expiry of live entries (room id -> this process's members) and of the
    rooms' keys, and sweep each room once for expired entries: one script call per room, the
    rooms' calls pipelined together (script_batch: BATCH_MAX calls a pipeline), not a round
    trip each. Returns, per room,
    the users whose every entry expired (they left without saying goodbye). A Redis failure
    of any room is raised after every other room's beat was made."""
    expiry, now, lifetime = _now() + settings.PRESENCE_TTL, _now(), _lifetime_ms()
    rooms = [(room_id, members) for room_id, members in entries.items() if members]
    replies = await asyncio.gather(
        *(
            run_batched(
                get_async_redis(room_id),
                _beat,
                (RoomKeys(room_id).presence, RoomKeys(room_id).presence_users),
                (expiry, now, lifetime, *members),
            )
            for room_id, members in rooms
        ),
        return_exceptions=True,
    )
    gone: dict[int, list[dict]] = {}
    failure: RedisError | None = None
    for (room_id, _), reply in zip(rooms, replies, strict=True):
        if isinstance(reply, RedisError):
            failure = failure or reply
        elif isinstance(reply, BaseException):
            raise reply
        elif reply:
            gone[room_id] = [user_from_member(m) for m in reply]
    if failure is not None:
        raise failure
    return gone


class PresenceKeeper:
    """This process's presence entries, one per subscribed socket, kept alive together.

    Every PRESENCE_HEARTBEAT seconds one task refreshes them all and sweeps each room once
    for entries that expired (a process that died), a slice of the rooms each second
    (``_run``): one script call per room, a slice's calls pipelined (``heartbeat``; at
    100,000 sockets a round trip per room and a sweep after it took a quarter of an idle
    web process's CPU), calling
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
        """Every room once a PRESENCE_HEARTBEAT, a slice of the rooms at a time: the rooms whose
        id falls in the slice, one slice a second (``beat_slices``), starting at a random slice.
        All rooms at once every 15 s was a burst of work in every process at the same moment
        (processes started together beat together): at 100,000 sockets over 14 processes, a
        second of both cores every 15 s, and the messages of that second waited for it."""
        slices = beat_slices()
        current = random.randrange(slices)
        while True:
            await asyncio.sleep(settings.PRESENCE_HEARTBEAT / slices)
            current = (current + 1) % slices
            try:
                await self.beat(slice_of=(current, slices))
            except RedisError:
                metrics.PRESENCE_FAILURES.inc()
                logger.warning("presence heartbeat failed", exc_info=True)

    async def beat(self, *, slice_of: tuple[int, int] = (0, 1)) -> None:
        """Refresh and sweep the rooms of one slice (``(index, slices)``: the rooms whose id
        is ``index`` modulo ``slices``); by default every room."""
        index, slices = slice_of
        entries = {room_id: set(members) for room_id, members in self.entries.items() if room_id % slices == index}
        gone_by_room = await heartbeat(entries=entries)
        metrics.PRESENCE_SWEEPS.inc(len(entries))
        for room_id, gone in gone_by_room.items():
            metrics.PRESENCE_EXPIRED.inc(len(gone))
            await self.on_gone(room_id, gone)


def beat_slices() -> int:
    """Into how many slices a process's rooms are cut for their heartbeats: one a second."""
    return max(1, int(settings.PRESENCE_HEARTBEAT))


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceKeeper] = weakref.WeakKeyDictionary()


def keeper(*, on_gone: Callable[[int, list[dict]], Awaitable[None]]) -> PresenceKeeper:
    """The running loop's keeper (made with ``on_gone`` the first time)."""
    loop = asyncio.get_running_loop()
    found = _keepers.get(loop)
    if found is None:
        found = _keepers[loop] = PresenceKeeper(on_gone)
    return found


@dataclass(frozen=True)
class Online:
    """Who is online in a room: ``users`` (at most PRESENCE_LIST_MAX people, participants
    first, each group by name) out of ``count`` people."""

    users: list[dict]
    count: int


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


# --- Telling the room: one event per room and PRESENCE_COALESCE_SECONDS ----------------

# News of a room that no process told (all of them stopped) leave Redis after this long (ms).
NEWS_LIFETIME_MS = 60_000


async def presence_broadcast(*, room_id: int, joins: list[dict], leaves: list[dict]) -> None:
    """Tell the room who came and went: gathered in this process for a
    PRESENCE_COALESCE_SECONDS, then with the other processes' news at most once a
    PRESENCE_COALESCE_SECONDS per room (``tell``), each user with their state when it goes
    out (a join then a leave within the interval is announced as a leave)."""
    coalescer = coalescer_for("presence", settings.PRESENCE_COALESCE_SECONDS, _flush_presence)
    users = coalescer.pending.get(room_id) or {}
    users.update({user["id"]: user for user in [*joins, *leaves]})
    coalescer.add(room_id, users)


async def presence_left(room_id: int, users: list[dict]) -> None:
    """Users whose every presence entry expired (their web process died) have left."""
    await presence_broadcast(room_id=room_id, joins=[], leaves=users)


# Rooms for which a task of this process waits to tell news it left (one task a room).
_waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[int]] = weakref.WeakKeyDictionary()


async def _flush_presence(room_id: int, users: dict[int, dict]) -> None:
    """Tell the room; news that could not be told (Redis could not be reached: down, or this
    loop too far behind to connect within the timeout) wait for the next interval with the news
    that came since, which win for the same user. The room's presence in Redis is right either
    way; without this its pages would show who came and went then wrongly until they subscribe
    again."""
    try:
        await tell(room_id=room_id, users=users)
    except (RedisError, OSError) as error:
        metrics.PRESENCE_NEWS_DEFERRED.inc()
        logger.warning("could not tell room %s who came and went (%r); trying again", room_id, error)
        coalescer = coalescer_for("presence", settings.PRESENCE_COALESCE_SECONDS, _flush_presence)
        coalescer.add(room_id, {**users, **(coalescer.pending.get(room_id) or {})})


async def tell(*, room_id: int, users: dict[int, dict]) -> bool:
    """Leave ``users`` (id -> user) as news of the room, and tell the room every news if
    nobody did within the interval. When another process did, wait for its lease to end and
    try again, until the news are told (by this process or another): news that a process
    left are never forgotten while that process lives. Returns whether this call told it."""
    keys = RoomKeys(room_id)
    redis = get_async_redis(room_id)
    interval_ms = max(1, round(settings.PRESENCE_COALESCE_SECONDS * 1000))
    news = [field for user_id, user in users.items() for field in (user_id, orjson.dumps(user))]
    waiting = _waiting.setdefault(asyncio.get_running_loop(), set())
    try:
        while True:
            reply = await run_batched(
                redis,
                _tell,
                (keys.presence_users, keys.presence_news, keys.presence_told),
                (interval_ms, NEWS_LIFETIME_MS, *news),
            )
            if int(reply[0]) == 0:
                return False
            if int(reply[0]) == 2:
                await _send_news(room_id, reply[1:])
                return True
            if news and room_id in waiting:
                return False  # left with the others; this process's waiting task tells them
            news = []
            waiting.add(room_id)
            await asyncio.sleep(max(10, int(reply[1])) / 1000)
    finally:
        if not news:
            waiting.discard(room_id)


async def _send_news(room_id: int, reply: list) -> None:
    online, news, counts = reply
    users = [orjson.loads(news[i + 1]) for i in range(0, len(news), 2)]
    joins = [user for user, n in zip(users, counts, strict=True) if n is not None and int(n) > 0]
    leaves = [user for user, n in zip(users, counts, strict=True) if n is None or int(n) <= 0]
    await get_channel_layer().group_send(
        room_group(room_id),
        events.room_presence_event(room_id=room_id, joins=_capped(joins), leaves=_capped(leaves), count=int(online)),
    )
