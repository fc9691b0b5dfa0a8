"""The per-room message buffer in Redis: sequence numbers, revisions and the durable log.

Keys of one room share the hash tag ``{<room_id>}`` and live on the room's server
(``pubsub_site.redis_client.room_redis_url``):

- ``…:seq``        the last sequence number given out (INCR)
- ``…:rev``        the room's revision: rises with every change to its state
- ``…:buf``        sorted set, score ``seq``, member the message record (JSON); holds
                   every message PostgreSQL does not have yet, plus the last
                   ``MESSAGE_BUFFER_KEEP`` persisted ones for fast replay
- ``…:persisted``  every message with ``seq`` up to this is in PostgreSQL
- ``…:cid:<uuid>`` the ``seq`` a ``client_id`` got, for retries (expires)

and per server ``pubsub:dirty`` (rooms with messages to persist) and
``pubsub:persist:scheduled`` (a persistence job is queued or running).

A record is the stored form of a message: ``seq``, ``rev``, ``author``, ``body``,
``client_id``, ``sent_at``. ``messaging.wire`` turns it into frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.conf import settings

from pubsub_site.redis_client import get_async_redis, get_redis

DIRTY_KEY = "pubsub:dirty"
SCHEDULED_KEY = "pubsub:persist:scheduled"
# A queued persistence job that died is replaced after this long (milliseconds).
SCHEDULED_TTL_MS = 5000


@dataclass(frozen=True)
class RoomKeys:
    room_id: int

    @property
    def prefix(self) -> str:
        return f"pubsub:room:{{{self.room_id}}}"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def rev(self) -> str:
        return f"{self.prefix}:rev"

    @property
    def buf(self) -> str:
        return f"{self.prefix}:buf"

    @property
    def persisted(self) -> str:
        return f"{self.prefix}:persisted"

    def client_id(self, client_id: str) -> str:
        return f"{self.prefix}:cid:{client_id}"

    # State that changes after a message is sent (see messaging.changes).
    @property
    def edits(self) -> str:
        return f"{self.prefix}:edits"  # seq -> {"body", "at", "rev"}

    @property
    def deletions(self) -> str:
        return f"{self.prefix}:deleted"  # seq -> {"at", "by", "hidden", "rev"}

    @property
    def clap_totals(self) -> str:
        return f"{self.prefix}:clapt"  # seq -> total

    @property
    def clap_revs(self) -> str:
        return f"{self.prefix}:claprev"  # seq -> rev of the last clap

    def claps_of(self, seq: int) -> str:
        return f"{self.prefix}:claps:{seq}"  # user id -> count

    @property
    def claps_given(self) -> str:
        return f"{self.prefix}:given"  # user id -> claps given in the room

    @property
    def claps_received(self) -> str:
        return f"{self.prefix}:received"  # user id -> claps received in the room

    @property
    def top(self) -> str:
        return f"{self.prefix}:top"  # sorted set: seq scored by total claps

    @property
    def changes(self) -> str:
        return f"{self.prefix}:changes"  # sorted set: seq scored by the rev of its last change

    @property
    def changes_persisted(self) -> str:
        return f"{self.prefix}:changes_persisted"  # every change up to this rev is in PostgreSQL

    @property
    def reads(self) -> str:
        return f"{self.prefix}:reads"  # user id -> last read seq

    @property
    def reads_dirty(self) -> str:
        return f"{self.prefix}:reads_dirty"  # user ids whose marker PostgreSQL lacks

    @property
    def presence(self) -> str:
        return f"{self.prefix}:presence"  # sorted set: "user_id|channel" scored by expiry time


# Dedupe by client_id, take the next seq and rev, store the record, move the
# author's read marker to it, mark the room dirty and claim the right to schedule
# a persistence job: one atomic step.
# Returns {-1} when the room's counters are missing (a fresh or wiped Redis),
# {0, seq} for a retry of a stored message, {1, seq, rev, record, schedule} otherwise.
APPEND_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local existing = redis.call('GET', KEYS[4])
if existing then return {0, tonumber(existing)} end
local seq = redis.call('INCR', KEYS[1])
local rev = redis.call('INCR', KEYS[2])
local record = cjson.decode(ARGV[1])
record['seq'] = seq
record['rev'] = rev
local encoded = cjson.encode(record)
redis.call('ZADD', KEYS[3], seq, encoded)
redis.call('SET', KEYS[4], seq, 'EX', tonumber(ARGV[2]))
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[7], ARGV[5], seq)
redis.call('SADD', KEYS[8], ARGV[5])
local schedule = 0
if redis.call('SET', KEYS[6], '1', 'NX', 'PX', tonumber(ARGV[4])) then schedule = 1 end
return {1, seq, rev, encoded, schedule}
"""

# Initialise a room's counters from PostgreSQL's high-water marks, unless present.
INIT_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('SET', KEYS[3], ARGV[1], 'NX')
redis.call('SET', KEYS[4], ARGV[2], 'NX')
return 1
"""

# After PostgreSQL committed every record up to ARGV[1]: raise the watermark and trim
# what replay no longer needs. Returns how many records still wait.
MARK_PERSISTED_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local upto = tonumber(ARGV[1])
if upto > current then
  redis.call('SET', KEYS[1], upto)
  current = upto
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', current - tonumber(ARGV[2]))
return redis.call('ZCOUNT', KEYS[2], '(' .. current, '+inf')
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


@dataclass(frozen=True)
class AppendResult:
    initialised: bool
    created: bool = False
    seq: int = 0
    rev: int = 0
    record: bytes = b""
    schedule_persist: bool = False


async def append(*, room_id: int, record: dict) -> AppendResult:
    keys = RoomKeys(room_id)
    client = get_async_redis(room_id)
    reply = await client.eval(
        APPEND_SCRIPT,
        8,
        keys.seq,
        keys.rev,
        keys.buf,
        keys.client_id(record["client_id"]),
        DIRTY_KEY,
        SCHEDULED_KEY,
        keys.reads,
        keys.reads_dirty,
        orjson.dumps(record),
        settings.MESSAGE_DEDUP_TTL,
        room_id,
        SCHEDULED_TTL_MS,
        record["author"]["id"],
    )
    status = int(reply[0])
    if status == -1:
        return AppendResult(initialised=False)
    if status == 0:
        return AppendResult(initialised=True, created=False, seq=int(reply[1]))
    return AppendResult(
        initialised=True,
        created=True,
        seq=int(reply[1]),
        rev=int(reply[2]),
        record=reply[3],
        schedule_persist=bool(int(reply[4])),
    )


def init_counters(*, room_id: int, seq: int, rev: int) -> None:
    keys = RoomKeys(room_id)
    get_redis(room_id).eval(INIT_SCRIPT, 4, keys.seq, keys.rev, keys.persisted, keys.changes_persisted, seq, rev)


def _parse_counters(values: list) -> tuple[int, int] | None:
    if values[0] is None:
        return None
    return int(values[0]), int(values[1] or 0)


async def acounters(*, room_id: int) -> tuple[int, int] | None:
    """(seq, rev) of the room, or None when Redis holds no state for it."""
    keys = RoomKeys(room_id)
    return _parse_counters(await get_async_redis(room_id).mget(keys.seq, keys.rev))


def counters(*, room_id: int) -> tuple[int, int] | None:
    keys = RoomKeys(room_id)
    return _parse_counters(get_redis(room_id).mget(keys.seq, keys.rev))


def _parse_records(raw: list[bytes]) -> list[dict]:
    return [orjson.loads(item) for item in raw]


async def arecords_between(*, room_id: int, after: int, upto: int) -> list[dict]:
    """Buffered records with after < seq <= upto, ascending."""
    raw = await get_async_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", upto)
    return _parse_records(raw)


def records_between(*, room_id: int, after: int, upto: int) -> list[dict]:
    raw = get_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", upto)
    return _parse_records(raw)


# --- Persistence (used by the job, synchronously) --------------------------


def dirty_room_ids(*, url: str) -> list[int]:
    return sorted(int(x) for x in get_redis(url=url).smembers(DIRTY_KEY))


def persisted_upto(*, room_id: int) -> int:
    return int(get_redis(room_id).get(RoomKeys(room_id).persisted) or 0)


def unpersisted_records(*, room_id: int, after: int, limit: int) -> list[dict]:
    raw = get_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", "+inf", start=0, num=limit)
    return _parse_records(raw)


def mark_persisted(*, room_id: int, upto: int) -> int:
    """Record that PostgreSQL has every message up to ``upto``; returns how many are still waiting."""
    keys = RoomKeys(room_id)
    return int(
        get_redis(room_id).eval(MARK_PERSISTED_SCRIPT, 2, keys.persisted, keys.buf, upto, settings.MESSAGE_BUFFER_KEEP)
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
    get_redis(room_id).eval(RAISE_SCRIPT, 1, RoomKeys(room_id).changes_persisted, upto_rev)


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
    get_redis(room_id).eval(READS_PERSISTED_SCRIPT, 2, keys.reads, keys.reads_dirty, *args)


def clear_dirty(*, room_id: int) -> bool:
    keys = RoomKeys(room_id)
    return bool(
        get_redis(room_id).eval(
            CLEAR_DIRTY_SCRIPT,
            6,
            keys.persisted,
            keys.buf,
            keys.changes_persisted,
            keys.changes,
            keys.reads_dirty,
            DIRTY_KEY,
            room_id,
        )
    )


def claim_sweep(*, client) -> bool:
    """True when the server has dirty rooms and no job scheduled; the caller then queues one."""
    return bool(client.eval(CLAIM_SWEEP_SCRIPT, 2, DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS))


def release_schedule(*, url: str) -> bool:
    return bool(get_redis(url=url).eval(RELEASE_SCHEDULE_SCRIPT, 2, DIRTY_KEY, SCHEDULED_KEY))


def forget_room(*, room_id: int) -> None:
    """Drop a deleted room's state (its rows went with it)."""
    client = get_redis(room_id)
    keys = list(client.scan_iter(match=f"{RoomKeys(room_id).prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.srem(DIRTY_KEY, room_id)
