"""The per-room message buffer in Redis: sequence numbers, revisions and the durable log.

Each room's log is a sorted set of records on the room's server, beside its counters
(``seq``, ``rev``), its dedupe keys and its persistence watermarks; every key is named in
``messaging.store.keys``, and every script runs through ``messaging.store.lua``.

A record is the stored form of a message: ``seq``, ``rev``, ``author``, ``body``,
``client_id``, ``sent_at``. ``protocol.wire`` turns it into frames.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import NoScriptError, RedisError

from messaging.store.keys import CONFIRM_KEY, DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from messaging.store.script_batch import run_batched
from pubsub_site.redis.client import get_async_redis, get_redis

# Dedupe by (author, client_id); refuse a new message past its author's send limit or slow mode;
# otherwise take the next seq and rev, store the record (and take off the buffer's expiry: a
# quiet room's buffer expires once PostgreSQL has all of it, messaging.store.watermarks),
# move the author's read marker
# to it, mark the room dirty, claim the right to schedule a persistence job, and count
# the message against the limits: one atomic step.
# KEYS: seq rev buf cid dirty scheduled reads reads_dirty [send_limit slow_mode [legacy_cid [threads changes]]]
# ARGV: record dedup_ttl room_id schedule_ttl_ms author_id [limit window_ms slow_ms
#       broadcast_channel sent_at confirm]
# The bracketed ones are optional: without them (or with 0) nothing limits the send; with a
# broadcast channel a stored message is also published there, as the channel layer's
# ``room.message`` event (messaging.realtime.layers.FanoutChannelLayer.script_broadcast_channel).
# With ``confirm`` ('1': the caller WAITs for replicas after the script, see ``append``) a
# retry rewrites its dedupe key (a write, so that the WAIT that follows covers the stored
# message: WAIT counts a connection's own writes) and gets the stored record back, to
# broadcast it once a replica has it.
# ``cid`` names the author: another author's replay of a client_id is a new message of
# theirs. ``legacy_cid`` is the key of the form written before (no author): it counts only
# when the buffer shows the message it names as this author's (or no longer holds it: then
# it is trusted as it was, rather than storing a retry twice), until it expires.
# The send limit is a moving window like the `limits` library's: a list holds
# the times of the author's last `limit` messages, newest first; a message is refused
# while the oldest of them is younger than the window, until it leaves it. Times are
# the Redis server's clock (milliseconds): one clock for every web process.
# Returns {-1} when the room's counters are missing (a fresh or wiped Redis),
# {0, seq} for a retry of a stored message (never refused, never counted; {0, seq, record}
# with ``confirm`` while the buffer holds the record),
# {1, seq, rev, record, schedule, published, thread, summary} for a stored one (``thread``: 1 when
# its thread's summary moved, then ``summary`` is it; -1 when Redis has no summary for its root),
# and for a refused one (nothing stored, nothing counted) {2, wait_ms} past the send limit, {3, wait_ms} in slow mode.
APPEND_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local cid = KEYS[4]
local existing = redis.call('GET', cid)
if not existing and KEYS[11] then
  local legacy = redis.call('GET', KEYS[11])
  if legacy then
    local stored = redis.call('ZRANGEBYSCORE', KEYS[3], legacy, legacy)
    if not stored[1] or tonumber(cjson.decode(stored[1])['author']['id']) == tonumber(ARGV[5]) then
      existing, cid = legacy, KEYS[11]
    end
  end
end
if existing then
  if ARGV[11] ~= '1' then return {0, tonumber(existing)} end
  redis.call('SET', cid, existing, 'KEEPTTL')
  local stored = redis.call('ZRANGEBYSCORE', KEYS[3], existing, existing)
  if stored[1] then return {0, tonumber(existing), stored[1]} end
  return {0, tonumber(existing)}
end
local limit = tonumber(ARGV[6] or '0')
local window = tonumber(ARGV[7] or '0')
local slow = tonumber(ARGV[8] or '0')
local now = 0
if limit > 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local oldest = redis.call('LINDEX', KEYS[9], limit - 1)
  if oldest and tonumber(oldest) + window > now then return {2, tonumber(oldest) + window - now} end
end
if slow > 0 then
  local wait = redis.call('PTTL', KEYS[10])
  if wait > 0 then return {3, wait} end
end
local seq = redis.call('INCR', KEYS[1])
local rev = redis.call('INCR', KEYS[2])
local record = cjson.decode(ARGV[1])
record['seq'] = seq
record['rev'] = rev
local encoded = cjson.encode(record)
redis.call('ZADD', KEYS[3], seq, encoded)
redis.call('PERSIST', KEYS[3])
redis.call('SET', KEYS[4], seq, 'EX', tonumber(ARGV[2]))
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[7], ARGV[5], seq)
redis.call('SADD', KEYS[8], ARGV[5])
local schedule = 0
if redis.call('SET', KEYS[6], '1', 'NX', 'PX', tonumber(ARGV[4])) then schedule = 1 end
if limit > 0 then
  redis.call('LPUSH', KEYS[9], now)
  redis.call('LTRIM', KEYS[9], 0, limit - 1)
  redis.call('PEXPIRE', KEYS[9], window)
end
if slow > 0 then redis.call('SET', KEYS[10], '1', 'PX', slow) end
-- A thread reply (``thread``: its root's seq) updates its thread's summary in the same step, a
-- change of the root with its own rev (messaging.store.threads); {-1} when the summary is not in
-- Redis (the caller then reads it from PostgreSQL and the buffer).
local thread, summary = 0, ''
if record['thread'] and KEYS[12] then
  local root = tostring(record['thread'])
  local stored = redis.call('HGET', KEYS[12], root)
  if stored then
    local s = cjson.decode(stored)
    local repliers = {record['author']}
    for _, r in ipairs(s['repliers']) do
      if #repliers < 3 and r['id'] ~= record['author']['id'] then table.insert(repliers, r) end
    end
    s['count'], s['last_seq'], s['last_reply_at'], s['repliers'] = s['count'] + 1, seq, record['sent_at'], repliers
    s['rev'] = redis.call('INCR', KEYS[2])
    summary = cjson.encode(s)
    redis.call('HSET', KEYS[12], root, summary)
    redis.call('ZADD', KEYS[13], s['rev'], root)
    thread = 1
  else
    thread = -1
  end
end
local published = 0
if ARGV[9] and ARGV[9] ~= '' then
  -- The room's group on the channel layer, in its format (messaging.realtime.layers): the message
  -- is broadcast in the call that stores it, so the wire's order is the buffer's.
  redis.call('PUBLISH', ARGV[9], cmsgpack.pack({
    type = 'room.message', room_id = tonumber(ARGV[3]), seq = seq, record = encoded, ts = tonumber(ARGV[10])}))
  published = 1
end
return {1, seq, rev, encoded, schedule, published, thread, summary}
"""

# Initialise a room's counters from PostgreSQL's high-water marks, unless present.
INIT_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('SET', KEYS[2], ARGV[2], 'NX')
redis.call('SET', KEYS[3], ARGV[1], 'NX')
redis.call('SET', KEYS[4], ARGV[2], 'NX')
if KEYS[5] then redis.call('SET', KEYS[5], ARGV[1], 'NX') end
return 1
"""

_append = LuaScript(APPEND_SCRIPT)
_init = LuaScript(INIT_SCRIPT)


@dataclass(frozen=True)
class SendLimits:
    """What may refuse a new message: at most ``per_window`` of the author's messages
    within ``window_ms``, and (slow mode) one every ``slow_mode_ms``. 0 turns one off."""

    per_window: int = 0
    window_ms: int = 0
    slow_mode_ms: int = 0


NO_LIMITS = SendLimits()

# Why append refused a message.
PAST_SEND_LIMIT = "send_limit"
SLOW_MODE = "slow_mode"


@dataclass(frozen=True)
class ReplicaWait:
    """Wait for ``replicas`` replicas to have a write, ``timeout_ms`` at most (Redis's WAIT)."""

    replicas: int
    timeout_ms: int


def replica_wait() -> ReplicaWait | None:
    """What ``REDIS_WAIT_REPLICAS`` asks for: None when an ack needs no replica."""
    if not settings.REDIS_WAIT_REPLICAS:
        return None
    return ReplicaWait(settings.REDIS_WAIT_REPLICAS, settings.REDIS_WAIT_TIMEOUT_MS)


class NotReplicated(RedisError):
    """Fewer replicas than ``REDIS_WAIT_REPLICAS`` confirmed a write in time: what it stored
    is on the primary only, and a failover could lose it. A send answers ``unavailable``;
    its retry (same ``client_id``) waits again and acks the stored message."""

    def __init__(self, wait: ReplicaWait, confirmed: int):
        super().__init__(f"{confirmed} of {wait.replicas} replicas confirmed the write within {wait.timeout_ms} ms")
        self.wait = wait
        self.confirmed = confirmed


@dataclass(frozen=True)
class AppendResult:
    initialised: bool
    created: bool = False
    seq: int = 0
    rev: int = 0
    record: bytes = b""  # the stored record; for a retry only when the call asked for replicas
    schedule_persist: bool = False
    broadcast: bool = False  # published by the script to the room's group
    refused_by: str | None = None  # PAST_SEND_LIMIT or SLOW_MODE: nothing was stored
    wait_ms: int = 0  # when refused: how long until the author may send
    replicas: int | None = None  # with ``wait``: how many replicas confirmed the call's writes
    # A thread reply: its thread's summary as the script moved it (JSON, with its ``rev``), or
    # ``thread_summary_missing`` when Redis holds none (messaging.store.threads).
    thread_summary: bytes = b""
    thread_summary_missing: bool = False


async def append(
    *,
    room_id: int,
    record: dict,
    limits: SendLimits = NO_LIMITS,
    broadcast_to: str | None = None,
    wait: ReplicaWait | None = None,
) -> AppendResult:
    """Store ``record`` unless its ``client_id`` was stored (a retry) or ``limits`` refuse it.

    One Redis call (EVALSHA): the limits are checked and counted in the same script, and
    with ``broadcast_to`` (a channel of this Redis server) a stored message is published
    there as a ``room.message`` event in the same atomic step.

    With ``wait``, still one round trip: a pipeline of the script and ``WAIT replicas
    timeout`` on the same connection; ``replicas`` says how many replicas have what the
    script wrote (for a retry, the stored message: the script rewrites its dedupe key, and
    returns its record so that the caller can broadcast it once confirmed). Give no
    ``broadcast_to`` with ``wait``: a message is broadcast only once a replica has it."""
    keys = RoomKeys(room_id)
    author_id = record["author"]["id"]
    client = get_async_redis(room_id)
    script_keys = (
        keys.seq,
        keys.rev,
        keys.buf,
        keys.client_id(record["client_id"], author_id),
        DIRTY_KEY,
        SCHEDULED_KEY,
        keys.reads,
        keys.reads_dirty,
        keys.send_limit_of(author_id),
        keys.slow_mode_of(author_id),
        keys.legacy_client_id(record["client_id"]),
        keys.threads,
        keys.changes,
    )
    args = (
        orjson.dumps(record),
        settings.MESSAGE_DEDUP_TTL,
        room_id,
        SCHEDULED_TTL_MS,
        author_id,
        limits.per_window,
        limits.window_ms,
        limits.slow_mode_ms,
        broadcast_to or "",
        time.time(),
    )
    replicas = None
    if wait is None:
        # With the other sends of this turn of the event loop: one pipeline (script_batch).
        reply = await run_batched(client, _append, script_keys, args)
    else:
        reply, replicas = await _run_and_wait(client, _append, script_keys, (*args, "1"), wait)
    status = int(reply[0])
    if status == -1:
        return AppendResult(initialised=False, replicas=replicas)
    if status == 0:
        stored = reply[2] if len(reply) > 2 else b""
        return AppendResult(initialised=True, created=False, seq=int(reply[1]), record=stored, replicas=replicas)
    if status in (2, 3):
        refused_by = PAST_SEND_LIMIT if status == 2 else SLOW_MODE
        return AppendResult(initialised=True, refused_by=refused_by, wait_ms=int(reply[1]), replicas=replicas)
    return AppendResult(
        initialised=True,
        created=True,
        seq=int(reply[1]),
        rev=int(reply[2]),
        record=reply[3],
        schedule_persist=bool(int(reply[4])),
        broadcast=bool(int(reply[5])),
        replicas=replicas,
        thread_summary=reply[7] if int(reply[6]) == 1 else b"",
        thread_summary_missing=int(reply[6]) == -1,
    )


async def _run_and_wait(
    client: aioredis.Redis, script: LuaScript, keys: Sequence, args: Sequence, wait: ReplicaWait
) -> tuple[list, int]:
    """EVALSHA then WAIT, pipelined on one connection: one round trip (two when the server
    does not know the script yet: it is loaded and the pair sent again)."""
    for _ in range(2):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.wait(wait.replicas, wait.timeout_ms)
        reply, replicas = await pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError):
            await client.script_load(script.text)
            continue
        for result in (reply, replicas):
            if isinstance(result, Exception):
                raise result
        return reply, int(replicas)
    raise NoScriptError(f"the server forgot script {script.sha} as soon as it was loaded")


def confirm_replicated(*, room_id: int | None = None, url: str | None = None) -> None:
    """With ``REDIS_WAIT_REPLICAS``: return once that many replicas have every write the
    room's server (or ``url``'s) took so far, else raise NotReplicated. The persistence job
    calls it between reading records and writing them to PostgreSQL: a record only the
    primary has (its send answered `unavailable`) could be lost in a failover and its seq
    given to another message, and PostgreSQL must not keep the first one under that seq.
    WAIT counts the connection's own writes: a write first (one round trip for both)."""
    wait = replica_wait()
    if wait is None:
        return
    with get_redis(room_id, url=url).pipeline(transaction=False) as pipe:
        pipe.incr(CONFIRM_KEY)
        pipe.wait(wait.replicas, wait.timeout_ms)
        _, confirmed = pipe.execute()
    if int(confirmed) < wait.replicas:
        raise NotReplicated(wait, int(confirmed))


def init_counters(*, room_id: int, seq: int, rev: int) -> None:
    keys = RoomKeys(room_id)
    _init.run(
        get_redis(room_id),
        keys=(keys.seq, keys.rev, keys.persisted, keys.changes_persisted, keys.threads_floor),
        args=(seq, rev),
    )


async def ainit_counters(*, room_id: int, seq: int, rev: int) -> None:
    keys = RoomKeys(room_id)
    await _init.arun(
        get_async_redis(room_id),
        keys=(keys.seq, keys.rev, keys.persisted, keys.changes_persisted, keys.threads_floor),
        args=(seq, rev),
    )


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


def stored_seq(*, room_id: int, author_id: int, client_id: str) -> int | None:
    """The seq the author's ``client_id`` was stored as, while its dedupe key lives
    (MESSAGE_DEDUP_TTL); None when it was not (yet) stored."""
    value = get_redis(room_id).get(RoomKeys(room_id).client_id(client_id, author_id))
    return int(value) if value is not None else None


def _parse_records(raw: list[bytes]) -> list[dict]:
    return [orjson.loads(item) for item in raw]


async def arecords_between(*, room_id: int, after: int, upto: int) -> list[dict]:
    """Buffered records with after < seq <= upto, ascending."""
    raw = await get_async_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", upto)
    return _parse_records(raw)


def records_between(*, room_id: int, after: int, upto: int) -> list[dict]:
    raw = get_redis(room_id).zrangebyscore(RoomKeys(room_id).buf, f"({after}", upto)
    return _parse_records(raw)


def records_at(*, room_id: int, seqs: list[int]) -> list[dict]:
    """The buffered records of these seqs (those it holds), in one round trip."""
    key = RoomKeys(room_id).buf
    pipe = get_redis(room_id).pipeline(transaction=False)
    for seq in seqs:
        pipe.zrangebyscore(key, seq, seq)
    return [orjson.loads(found[0]) for found in pipe.execute() if found]
