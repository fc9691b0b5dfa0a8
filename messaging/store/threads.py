"""Threads' summaries in Redis: how many replies each thread has, its last reply and repliers.

A thread reply is a message of the room (its own ``seq``, in the buffer, persisted like any);
its root's summary moves in the append script that stores it (messaging.store.buffer), taking
the room's next ``rev`` and scoring the root in ``changes``: a change of the root, recovered by
``rev`` like claps. The summary is derived from the messages, so PostgreSQL needs no copy of
it: where Redis has none (its data was lost, or the thread began before this hash existed) it
is read from PostgreSQL and the buffer (messaging.threads.selectors) and written back here, only
ever to a summary with more replies (``summary_offer``): two such reads racing leave the fuller.
"""

from __future__ import annotations

import orjson

from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from pubsub_site.redis.client import get_async_redis, get_redis

# KEYS: threads rev changes dirty scheduled; ARGV: root summary-json room_id ttl
OFFER_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local offered = cjson.decode(ARGV[2])
if stored and cjson.decode(stored)['count'] >= offered['count'] then return {0, stored, 0} end
offered['rev'] = redis.call('INCR', KEYS[2])
local encoded = cjson.encode(offered)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('ZADD', KEYS[3], offered['rev'], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
local schedule = 0
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', tonumber(ARGV[4])) then schedule = 1 end
return {1, encoded, schedule}
"""

_offer = LuaScript(OFFER_SCRIPT)


def thread_summary_parse(raw: bytes | str) -> tuple[dict, int]:
    """(summary in its wire form, rev of its last change) of a stored summary."""
    summary = orjson.loads(raw)
    rev = int(summary.pop("rev", 0) or 0)
    summary["count"] = int(summary["count"])
    summary["last_seq"] = int(summary["last_seq"])
    return summary, rev


async def summary_offer(*, room_id: int, root: int, summary: dict) -> tuple[bool, dict, int, bool]:
    """Store ``summary`` of the thread of ``root`` unless Redis has one with as many replies:
    (written, the summary Redis now has, its rev, schedule_persist)."""
    keys = RoomKeys(room_id)
    reply = await _offer.arun(
        get_async_redis(room_id),
        keys=(keys.threads, keys.rev, keys.changes, DIRTY_KEY, SCHEDULED_KEY),
        args=(root, orjson.dumps(summary), room_id, SCHEDULED_TTL_MS),
    )
    stored, rev = thread_summary_parse(reply[1])
    return bool(int(reply[0])), stored, rev, bool(int(reply[2]))


def summaries_of(*, room_id: int, seqs: list[int]) -> tuple[dict[int, tuple[dict, int]], int]:
    """The summaries Redis holds for these roots (seq -> (summary, rev)), and the room's floor:
    roots up to it may have a summary Redis lost (0: none can)."""
    if not seqs:
        return {}, 0
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=False)
    pipe.hmget(keys.threads, seqs)
    pipe.get(keys.threads_floor)
    values, floor = pipe.execute()
    found = {seq: thread_summary_parse(raw) for seq, raw in zip(seqs, values, strict=True) if raw is not None}
    return found, int(floor or 0)
