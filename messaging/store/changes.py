"""What changes after a message is sent: edits, deletions, claps and read markers, in Redis.

Every change takes the room's next ``rev`` and scores the message in ``changes`` with
it, so a client that was away can ask for everything changed after the ``rev`` it
had. The persistence job copies changes to PostgreSQL in ``rev`` order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from messaging.models import CLAP_CAP
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from messaging.store.previews import previews_key
from protocol.wire import MessageState
from pubsub_site.redis.client import get_async_redis, get_redis

NOT_INITIALISED = -1
AUTHOR_UNKNOWN = -2
NO_SUCH_MESSAGE = -3
ALREADY_DELETED = -4

_MARK_DIRTY = """
redis.call('SADD', KEYS[#KEYS - 1], ARGV[#ARGV - 1])
local schedule = 0
if redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', tonumber(ARGV[#ARGV])) then schedule = 1 end
"""
# For the other change scripts (reactions, pins): the last two KEYS are DIRTY_KEY and
# SCHEDULED_KEY, the last two ARGV the room id and SCHEDULED_TTL_MS; sets ``schedule``.
MARK_DIRTY_LUA = _MARK_DIRTY

# KEYS: seq rev buf deletions claps_of clap_totals clap_revs given received top changes dirty scheduled
# ARGV: seq user_id count cap author_hint room_id ttl
CLAP_SCRIPT = (
    """
local seq = tonumber(ARGV[1])
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
if seq < 1 or seq > tonumber(latest) then return {-3} end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return {-4} end
local author = ARGV[5]
if author == '' then
  local rec = redis.call('ZRANGEBYSCORE', KEYS[3], seq, seq)
  if rec[1] == nil then return {-2} end
  author = tostring(cjson.decode(rec[1])['author']['id'])
end
local mine = tonumber(redis.call('HGET', KEYS[5], ARGV[2]) or '0')
local want = mine + tonumber(ARGV[3])
if want > tonumber(ARGV[4]) then want = tonumber(ARGV[4]) end
local added = want - mine
if added <= 0 then
  return {0, mine, tonumber(redis.call('HGET', KEYS[6], ARGV[1]) or '0'),
          tonumber(redis.call('HGET', KEYS[7], ARGV[1]) or '0'), 0, tonumber(author)}
end
redis.call('HSET', KEYS[5], ARGV[2], want)
local total = redis.call('HINCRBY', KEYS[6], ARGV[1], added)
local rev = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[7], ARGV[1], rev)
redis.call('HINCRBY', KEYS[8], ARGV[2], added)
redis.call('HINCRBY', KEYS[9], author, added)
redis.call('ZADD', KEYS[10], total, ARGV[1])
redis.call('ZADD', KEYS[11], rev, ARGV[1])
"""
    + _MARK_DIRTY
    + """
return {1, want, total, rev, schedule, tonumber(author)}
"""
)

# KEYS: seq rev deletions edits changes dirty scheduled; ARGV: seq edit-json room_id ttl
EDIT_SCRIPT = (
    """
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
if tonumber(ARGV[1]) > tonumber(latest) then return {-3} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {-4} end
local rev = redis.call('INCR', KEYS[2])
local edit = cjson.decode(ARGV[2])
edit['rev'] = rev
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(edit))
redis.call('ZADD', KEYS[5], rev, ARGV[1])
"""
    + _MARK_DIRTY
    + """
return {1, rev, schedule}
"""
)

# KEYS: seq rev deletions changes top dirty scheduled; ARGV: seq deletion-json room_id ttl
DELETE_SCRIPT = (
    """
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
if tonumber(ARGV[1]) > tonumber(latest) then return {-3} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {-4} end
local rev = redis.call('INCR', KEYS[2])
local deletion = cjson.decode(ARGV[2])
deletion['rev'] = rev
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(deletion))
redis.call('ZADD', KEYS[4], rev, ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
"""
    + _MARK_DIRTY
    + """
return {1, rev, schedule}
"""
)

# KEYS: reads reads_dirty dirty scheduled; ARGV: user_id seq room_id ttl. Only ever raises the marker.
READ_SCRIPT = (
    """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= current then return {0, current, 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
"""
    + _MARK_DIRTY
    + """
return {1, tonumber(ARGV[2]), schedule}
"""
)

_clap = LuaScript(CLAP_SCRIPT)
_edit = LuaScript(EDIT_SCRIPT)
_delete = LuaScript(DELETE_SCRIPT)
_read = LuaScript(READ_SCRIPT)


@dataclass(frozen=True)
class ChangeResult:
    status: int
    rev: int = 0
    schedule_persist: bool = False


@dataclass(frozen=True)
class ClapResult:
    status: int
    user_total: int = 0
    total: int = 0
    rev: int = 0
    schedule_persist: bool = False
    author_id: int = 0


async def clap(*, room_id: int, seq: int, user_id: int, count: int, author_hint: int | None = None) -> ClapResult:
    keys = RoomKeys(room_id)
    reply = await _clap.arun(
        get_async_redis(room_id),
        keys=(
            keys.seq,
            keys.rev,
            keys.buf,
            keys.deletions,
            keys.claps_of(seq),
            keys.clap_totals,
            keys.clap_revs,
            keys.claps_given,
            keys.claps_received,
            keys.top,
            keys.changes,
            DIRTY_KEY,
            SCHEDULED_KEY,
        ),
        args=(seq, user_id, count, CLAP_CAP, "" if author_hint is None else author_hint, room_id, SCHEDULED_TTL_MS),
    )
    status = int(reply[0])
    if status < 0:
        return ClapResult(status=status)
    return ClapResult(
        status=status,
        user_total=int(reply[1]),
        total=int(reply[2]),
        rev=int(reply[3]),
        schedule_persist=bool(int(reply[4])),
        author_id=int(reply[5]),
    )


async def edit(*, room_id: int, seq: int, body: str, at: str) -> ChangeResult:
    keys = RoomKeys(room_id)
    reply = await _edit.arun(
        get_async_redis(room_id),
        keys=(keys.seq, keys.rev, keys.deletions, keys.edits, keys.changes, DIRTY_KEY, SCHEDULED_KEY),
        args=(seq, orjson.dumps({"body": body, "at": at}), room_id, SCHEDULED_TTL_MS),
    )
    return _change_result(reply)


def _delete_keys_and_args(room_id: int, seq: int, at: str, by: int, hidden: bool) -> tuple[tuple, tuple]:
    keys = RoomKeys(room_id)
    return (
        (keys.seq, keys.rev, keys.deletions, keys.changes, keys.top, DIRTY_KEY, SCHEDULED_KEY),
        (seq, orjson.dumps({"at": at, "by": by, "hidden": hidden}), room_id, SCHEDULED_TTL_MS),
    )


async def adelete(*, room_id: int, seq: int, at: str, by: int, hidden: bool) -> ChangeResult:
    reply = await _delete.arun(get_async_redis(room_id), *_delete_keys_and_args(room_id, seq, at, by, hidden))
    return _change_result(reply)


def delete(*, room_id: int, seq: int, at: str, by: int, hidden: bool) -> ChangeResult:
    return _change_result(_delete.run(get_redis(room_id), *_delete_keys_and_args(room_id, seq, at, by, hidden)))


def _change_result(reply: list) -> ChangeResult:
    status = int(reply[0])
    if status < 0:
        return ChangeResult(status=status)
    return ChangeResult(status=status, rev=int(reply[1]), schedule_persist=bool(int(reply[2])))


async def mark_read(*, room_id: int, user_id: int, seq: int) -> tuple[bool, int, bool]:
    """Raise the user's read marker; returns (raised, marker, schedule_persist)."""
    keys = RoomKeys(room_id)
    reply = await _read.arun(
        get_async_redis(room_id),
        keys=(keys.reads, keys.reads_dirty, DIRTY_KEY, SCHEDULED_KEY),
        args=(user_id, seq, room_id, SCHEDULED_TTL_MS),
    )
    return bool(int(reply[0])), int(reply[1]), bool(int(reply[2]))


# --- Reading state ---------------------------------------------------------


@dataclass(frozen=True)
class RedisState:
    edit: dict | None
    deletion: dict | None
    claps: int | None
    clap_rev: int | None
    preview: dict | None = None  # the link card's entry (messaging.store.previews)
    # Read in the same round trip, as stored: parsed by messaging.store.message_extras.
    reactions: bytes | None = None
    pin: bytes | None = None


def _parse_states(seqs: list[int], edits, deletions, totals, revs, previews, reactions, pins) -> dict[int, RedisState]:
    return {
        seq: RedisState(
            edit=orjson.loads(e) if e else None,
            deletion=orjson.loads(d) if d else None,
            claps=int(t) if t is not None else None,
            clap_rev=int(r) if r is not None else None,
            preview=orjson.loads(p) if p else None,
            reactions=x,
            pin=pin,
        )
        for seq, e, d, t, r, p, x, pin in zip(
            seqs, edits, deletions, totals, revs, previews, reactions, pins, strict=True
        )
    }


def states_of(*, room_id: int, seqs: list[int]) -> dict[int, RedisState]:
    if not seqs:
        return {}
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=True)
    pipe.hmget(keys.edits, seqs)
    pipe.hmget(keys.deletions, seqs)
    pipe.hmget(keys.clap_totals, seqs)
    pipe.hmget(keys.clap_revs, seqs)
    pipe.hmget(previews_key(room_id), seqs)
    pipe.hmget(keys.reactions, seqs)
    pipe.hmget(keys.pins, seqs)
    return _parse_states(seqs, *pipe.execute())


def merge_state(record: dict, redis_state: RedisState | None, fallback: MessageState | None = None) -> MessageState:
    """The message's current state: Redis where it knows, else PostgreSQL's ``fallback``."""
    fallback = fallback or MessageState()
    if redis_state is None:
        return fallback
    revs = [record["rev"], fallback.rev or 0]
    body, edited = fallback.body, fallback.edited
    if redis_state.edit is not None:
        body, edited = redis_state.edit["body"], True
        revs.append(redis_state.edit["rev"])
    deleted = fallback.deleted
    if redis_state.deletion is not None:
        deleted = True
        revs.append(redis_state.deletion["rev"])
    claps = fallback.claps
    if redis_state.claps is not None:
        claps = redis_state.claps
        revs.append(redis_state.clap_rev or 0)
    preview, preview_rev = fallback.preview, fallback.preview_rev
    if redis_state.preview is not None:
        preview, preview_rev = redis_state.preview["card"], redis_state.preview["rev"]
        revs.append(preview_rev)
    # What Redis does not know here (reactions and pins: messaging.store.message_extras) is
    # the fallback's.
    return dataclasses.replace(
        fallback,
        claps=claps,
        edited=edited,
        deleted=deleted,
        body=body,
        rev=max(revs),
        edit_rev=redis_state.edit["rev"] if redis_state.edit else fallback.edit_rev,
        delete_rev=redis_state.deletion["rev"] if redis_state.deletion else fallback.delete_rev,
        clap_rev=redis_state.clap_rev if redis_state.claps is not None else fallback.clap_rev,
        preview=preview,
        preview_rev=preview_rev,
    )


def changed_seqs_after(*, room_id: int, rev: int, upto_seq: int, limit: int) -> list[int]:
    """Messages with seq <= upto_seq whose last change came after ``rev`` (as far as Redis
    knows), of the first ``limit`` changed after it (in rev order)."""
    raw = get_redis(room_id).zrangebyscore(RoomKeys(room_id).changes, f"({rev}", "+inf", start=0, num=limit)
    return sorted(seq for seq in (int(x) for x in raw) if seq <= upto_seq)


def user_claps(*, room_id: int, user_id: int, seqs: list[int]) -> dict[int, int]:
    """How many times the user clapped each of these messages."""
    if not seqs:
        return {}
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=False)
    for seq in seqs:
        pipe.hget(keys.claps_of(seq), user_id)
    return {seq: int(v) for seq, v in zip(seqs, pipe.execute(), strict=True) if v is not None}


def clap_counts(*, room_id: int) -> tuple[dict[int, int], dict[int, int]]:
    """(claps given, claps received) per user id in the room."""
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=True)
    pipe.hgetall(keys.claps_given)
    pipe.hgetall(keys.claps_received)
    given, received = pipe.execute()
    return ({int(k): int(v) for k, v in given.items()}, {int(k): int(v) for k, v in received.items()})


async def aclap_counts_for(*, room_id: int, user_ids: list[int]) -> dict[int, tuple[int, int]]:
    keys = RoomKeys(room_id)
    pipe = get_async_redis(room_id).pipeline(transaction=True)
    pipe.hmget(keys.claps_given, user_ids)
    pipe.hmget(keys.claps_received, user_ids)
    given, received = await pipe.execute()
    return {u: (int(g or 0), int(r or 0)) for u, g, r in zip(user_ids, given, received, strict=True)}


def top_clapped_seqs(*, room_id: int, limit: int = 10) -> list[tuple[int, int]]:
    raw = get_redis(room_id).zrevrange(RoomKeys(room_id).top, 0, limit - 1, withscores=True)
    return [(int(seq), int(score)) for seq, score in raw if score > 0]


async def aclap_snapshot(*, room_id: int, seq: int) -> tuple[int, int]:
    """(total, rev of the last clap) of a message, read together."""
    keys = RoomKeys(room_id)
    pipe = get_async_redis(room_id).pipeline(transaction=True)
    pipe.hget(keys.clap_totals, seq)
    pipe.hget(keys.clap_revs, seq)
    total, rev = await pipe.execute()
    return int(total or 0), int(rev or 0)


def read_markers(*, room_id: int, user_ids: list[int]) -> dict[int, int]:
    if not user_ids:
        return {}
    values = get_redis(room_id).hmget(RoomKeys(room_id).reads, user_ids)
    return {u: int(v) for u, v in zip(user_ids, values, strict=True) if v is not None}


async def aread_marker(*, room_id: int, user_id: int) -> int | None:
    """The user's read marker in the room as Redis holds it (None: not there; PostgreSQL's
    ``Membership.last_read_seq`` is then the newest)."""
    value = await get_async_redis(room_id).hget(RoomKeys(room_id).reads, user_id)
    return int(value) if value is not None else None


def claps_by_user(*, room_id: int, seqs: list[int]) -> dict[int, dict[int, int]]:
    """seq -> {user id -> count} for these messages."""
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=False)
    for seq in seqs:
        pipe.hgetall(keys.claps_of(seq))
    return {
        seq: {int(u): int(c) for u, c in per_user.items()}
        for seq, per_user in zip(seqs, pipe.execute(), strict=True)
        if per_user
    }
