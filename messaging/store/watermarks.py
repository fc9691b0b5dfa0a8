"""The persistence bookkeeping in Redis: which rooms have something PostgreSQL lacks, and how far it has it.

Per room server ``pubsub:dirty`` holds the rooms with messages, changes or read markers to
persist and ``pubsub:persist:scheduled`` says a persistence job is queued or running; per
room the watermarks ``persisted`` (messages) and ``changes_persisted`` (edits, deletions,
claps) only rise, and only after the database committed (``messaging.store.persistence``,
the job, reads and moves them; ``messaging.store.keys`` names them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from django.conf import settings

from messaging.frames import client_id_time
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from protocol.wire import iso_time
from pubsub_site.redis.client import get_redis

# After PostgreSQL committed every record up to ARGV[1]: raise the watermark and let go of
# what Redis no longer needs. KEYS: persisted buf [dedupe keys...]; ARGV: upto keep hot_seconds
# cutoff (ISO 8601, as the records' ``sent_at``).
# - The dedupe keys given (the batch's UUIDv7 sends) expire ``hot_seconds`` from now, never
#   later than they would have: a later retry is answered from PostgreSQL
#   (messaging.services.message_send).
# - The buffer keeps at most ``keep`` persisted records, and none sent before ``cutoff``: the
#   oldest are looked at until the first one still hot (at most 256 a call; the next call
#   goes on). Unpersisted records are never touched.
# - A buffer with nothing left to persist expires ``hot_seconds`` from now as a whole (a room
#   gone quiet; the append script takes the expiry off again with its next record).
# Returns how many records still wait.
MARK_PERSISTED_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local upto = tonumber(ARGV[1])
if upto > current then
  redis.call('SET', KEYS[1], upto)
  current = upto
end
local hot = tonumber(ARGV[3])
for i = 3, #KEYS do
  local ttl = redis.call('TTL', KEYS[i])
  if ttl == -1 or ttl > hot then redis.call('EXPIRE', KEYS[i], hot) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', current - tonumber(ARGV[2]))
local drop, looked, hot_found = nil, 0, false
repeat
  local chunk = redis.call('ZRANGE', KEYS[2], looked, looked + 15, 'WITHSCORES')
  if #chunk == 0 then break end
  for i = 1, #chunk, 2 do
    local seq = tonumber(chunk[i + 1])
    if seq > current or cjson.decode(chunk[i])['sent_at'] >= ARGV[4] then
      hot_found = true
      break
    end
    drop = seq
  end
  looked = looked + 16
until hot_found or looked >= 256
if drop then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', drop) end
local waiting = redis.call('ZCOUNT', KEYS[2], '(' .. current, '+inf')
if waiting == 0 then redis.call('EXPIRE', KEYS[2], hot) end
return waiting
"""

# KEYS: persisted buf changes_persisted changes reads_dirty dirty; ARGV: room_id.
# The room is clean when PostgreSQL has every message, change and read marker.
CLEAR_DIRTY_SCRIPT = """
local persisted = redis.call('GET', KEYS[1]) or '0'
local changes_persisted = redis.call('GET', KEYS[3]) or '0'
if redis.call('ZCOUNT', KEYS[2], '(' .. persisted, '+inf') > 0 then return 0 end
if redis.call('ZCOUNT', KEYS[4], '(' .. changes_persisted, '+inf') > 0 then return 0 end
if redis.call('SCARD', KEYS[5]) > 0 then return 0 end
redis.call('SREM', KEYS[6], ARGV[1])
return 1
"""

# Raise a watermark (never lower it).
RAISE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: reads reads_dirty; ARGV: user, value, user, value... Forget the users whose
# marker PostgreSQL now has (unless it moved meanwhile).
READS_PERSISTED_SCRIPT = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('SREM', KEYS[2], ARGV[i]) end
end
return 1
"""

# The job is done when no room is dirty: drop the scheduled flag so the next
# send schedules a new job. Atomic with APPEND_SCRIPT, so no send is missed.
RELEASE_SCHEDULE_SCRIPT = """
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""


# The worker's sweep: claim the right to queue a job when rooms wait and none is scheduled.
CLAIM_SWEEP_SCRIPT = """
if redis.call('SCARD', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[1])) then return 1 end
return 0
"""

_mark_persisted = LuaScript(MARK_PERSISTED_SCRIPT)
_clear_dirty = LuaScript(CLEAR_DIRTY_SCRIPT)
_raise = LuaScript(RAISE_SCRIPT)
_reads_persisted = LuaScript(READS_PERSISTED_SCRIPT)
_release_schedule = LuaScript(RELEASE_SCHEDULE_SCRIPT)
_claim_sweep = LuaScript(CLAIM_SWEEP_SCRIPT)


def dirty_room_ids(*, url: str) -> list[int]:
    return sorted(int(x) for x in get_redis(url=url).smembers(DIRTY_KEY))


def persisted_upto(*, room_id: int) -> int:
    return int(get_redis(room_id).get(RoomKeys(room_id).persisted) or 0)


def unpersisted_records(*, room_id: int, after: int, limit: int) -> list[dict]:
    raw = get_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", "+inf", start=0, num=limit)
    return [orjson.loads(item) for item in raw]


def mark_persisted(*, room_id: int, upto: int, records: Sequence[dict] = ()) -> int:
    """Record that PostgreSQL has every message up to ``upto``; returns how many are still
    waiting. Redis then keeps no persisted record older than ``MESSAGE_HOT_SECONDS`` in the
    buffer, and the dedupe keys of ``records`` (the batch) sent with a UUIDv7 ``client_id``
    that long at most (MARK_PERSISTED_SCRIPT); another UUID's key keeps its MESSAGE_DEDUP_TTL."""
    keys = RoomKeys(room_id)
    dedupe = [
        keys.client_id(r["client_id"], r["author"]["id"]) for r in records if client_id_time(r["client_id"]) is not None
    ]
    hot = settings.MESSAGE_HOT_SECONDS
    cutoff = iso_time(datetime.fromtimestamp(time.time() - hot, UTC))
    return int(
        _mark_persisted.run(
            get_redis(room_id),
            keys=(keys.persisted, keys.buf, *dedupe),
            args=(upto, settings.MESSAGE_BUFFER_KEEP, hot, cutoff),
        )
    )


def changes_persisted_upto(*, room_id: int) -> int:
    return int(get_redis(room_id).get(RoomKeys(room_id).changes_persisted) or 0)


def unpersisted_changes(*, room_id: int, after_rev: int, limit: int) -> list[tuple[int, int]]:
    """(seq, rev) of changes after ``after_rev``, in rev order."""
    raw = get_redis(room_id).zrangebyscore(
        RoomKeys(room_id).changes, f"({after_rev}", "+inf", start=0, num=limit, withscores=True
    )
    return [(int(seq), int(rev)) for seq, rev in raw]


def mark_changes_persisted(*, room_id: int, upto_rev: int) -> None:
    _raise.run(get_redis(room_id), keys=(RoomKeys(room_id).changes_persisted,), args=(upto_rev,))


def unpersisted_reads(*, room_id: int) -> dict[int, int]:
    keys = RoomKeys(room_id)
    client = get_redis(room_id)
    users = sorted(int(u) for u in client.smembers(keys.reads_dirty))
    if not users:
        return {}
    values = client.hmget(keys.reads, users)
    return {u: int(v) for u, v in zip(users, values, strict=True) if v is not None}


def mark_reads_persisted(*, room_id: int, reads: dict[int, int]) -> None:
    if not reads:
        return
    keys = RoomKeys(room_id)
    args = [x for user, seq in reads.items() for x in (user, seq)]
    _reads_persisted.run(get_redis(room_id), keys=(keys.reads, keys.reads_dirty), args=args)


def clear_dirty(*, room_id: int) -> bool:
    keys = RoomKeys(room_id)
    return bool(
        _clear_dirty.run(
            get_redis(room_id),
            keys=(keys.persisted, keys.buf, keys.changes_persisted, keys.changes, keys.reads_dirty, DIRTY_KEY),
            args=(room_id,),
        )
    )


def claim_sweep(*, client) -> bool:
    """True when the server has dirty rooms and no job scheduled; the caller then queues one."""
    return bool(_claim_sweep.run(client, keys=(DIRTY_KEY, SCHEDULED_KEY), args=(SCHEDULED_TTL_MS,)))


def release_schedule(*, url: str) -> bool:
    return bool(_release_schedule.run(get_redis(url=url), keys=(DIRTY_KEY, SCHEDULED_KEY)))


def forget_room(*, room_id: int) -> None:
    """Drop a deleted room's state (its rows went with it)."""
    client = get_redis(room_id)
    keys = list(client.scan_iter(match=f"{RoomKeys(room_id).prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.srem(DIRTY_KEY, room_id)
