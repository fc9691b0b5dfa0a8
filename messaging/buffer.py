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


# Dedupe by client_id, take the next seq and rev, store the record, mark the room
# dirty and claim the right to schedule a persistence job: one atomic step.
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
local schedule = 0
if redis.call('SET', KEYS[6], '1', 'NX', 'PX', tonumber(ARGV[4])) then schedule = 1 end
return {1, seq, rev, encoded, schedule}
"""

# Initialise a room's counters from PostgreSQL's high-water marks, unless present.
INIT_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('SET', KEYS[3], ARGV[1], 'NX')
return 1
"""

# After PostgreSQL committed every record up to ARGV[1]: raise the watermark, trim
# what replay no longer needs, and clear the dirty mark when nothing is left.
MARK_PERSISTED_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local upto = tonumber(ARGV[1])
if upto > current then
  redis.call('SET', KEYS[1], upto)
  current = upto
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', current - tonumber(ARGV[2]))
local left = redis.call('ZCOUNT', KEYS[2], '(' .. current, '+inf')
if left == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end
return left
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
        6,
        keys.seq,
        keys.rev,
        keys.buf,
        keys.client_id(record["client_id"]),
        DIRTY_KEY,
        SCHEDULED_KEY,
        orjson.dumps(record),
        settings.MESSAGE_DEDUP_TTL,
        room_id,
        SCHEDULED_TTL_MS,
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
    get_redis(room_id).eval(INIT_SCRIPT, 3, keys.seq, keys.rev, keys.persisted, seq, rev)


async def ainit_counters(*, room_id: int, seq: int, rev: int) -> None:
    keys = RoomKeys(room_id)
    await get_async_redis(room_id).eval(INIT_SCRIPT, 3, keys.seq, keys.rev, keys.persisted, seq, rev)


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
        get_redis(room_id).eval(
            MARK_PERSISTED_SCRIPT, 3, keys.persisted, keys.buf, DIRTY_KEY, upto, settings.MESSAGE_BUFFER_KEEP, room_id
        )
    )


def release_schedule(*, url: str) -> bool:
    return bool(get_redis(url=url).eval(RELEASE_SCHEDULE_SCRIPT, 2, DIRTY_KEY, SCHEDULED_KEY))
