"""Pinned messages in Redis: a message's pin state, changed in one step with the room's ``rev``.

Pinning or unpinning takes the room's next ``rev`` and scores the message in ``changes``
with it, like an edit (messaging.store.changes): a client away learns of it by ``rev``,
and the persistence job makes PostgreSQL's ``Pin`` row match (``pins_persist``). The
state of a message (``RoomKeys.pins``) is ``{"pinned", "by": {id, username}, "at", "rev"}``;
an unpin keeps the entry (``pinned`` false), so that recovery and persistence know of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from django.utils.dateparse import parse_datetime

from messaging.models import Message, Pin
from messaging.store.changes import MARK_DIRTY_LUA, ChangeResult, RedisState
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from protocol.wire import iso_time
from pubsub_site.redis.client import get_redis

# KEYS: seq rev deletions pins changes dirty scheduled; ARGV: seq pin-json room_id ttl
# A deleted message cannot be pinned (ALREADY_DELETED); it can be unpinned.
PIN_SCRIPT = (
    """
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
if tonumber(ARGV[1]) < 1 or tonumber(ARGV[1]) > tonumber(latest) then return {-3} end
local pin = cjson.decode(ARGV[2])
if pin['pinned'] and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {-4} end
local rev = redis.call('INCR', KEYS[2])
pin['rev'] = rev
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(pin))
redis.call('ZADD', KEYS[5], rev, ARGV[1])
"""
    + MARK_DIRTY_LUA
    + """
return {1, rev, schedule}
"""
)

_pin = LuaScript(PIN_SCRIPT)


@dataclass(frozen=True)
class PinState:
    pinned: bool
    by: dict | None  # {id, username} of who pinned it (or unpinned it)
    at: str  # when (ISO 8601)
    rev: int = 0  # 0: not known (read from PostgreSQL)


def pin_set(*, room_id: int, seq: int, pinned: bool, by: dict, at: str) -> ChangeResult:
    """Pin or unpin the message: status 1 and the new ``rev``, or a messaging.store.changes status."""
    keys = RoomKeys(room_id)
    reply = _pin.run(
        get_redis(room_id),
        keys=(keys.seq, keys.rev, keys.deletions, keys.pins, keys.changes, DIRTY_KEY, SCHEDULED_KEY),
        args=(seq, orjson.dumps({"pinned": pinned, "by": by, "at": at}), room_id, SCHEDULED_TTL_MS),
    )
    status = int(reply[0])
    if status < 0:
        return ChangeResult(status=status)
    return ChangeResult(status=status, rev=int(reply[1]), schedule_persist=bool(int(reply[2])))


def pin_parse(raw: bytes | str) -> PinState:
    data = orjson.loads(raw)
    return PinState(pinned=bool(data["pinned"]), by=data.get("by"), at=data["at"], rev=int(data["rev"]))


def pins_all(*, room_id: int) -> dict[int, PinState]:
    """Every pin state Redis holds for the room (pinned or not), by seq."""
    return {int(seq): pin_parse(raw) for seq, raw in get_redis(room_id).hgetall(RoomKeys(room_id).pins).items()}


def pins_persist(*, messages: dict[int, Message], states: dict[int, RedisState]) -> None:
    """Make the ``Pin`` rows of these messages (by seq) match the pins Redis had (``states``,
    read with the rest of their state); the caller holds a transaction. Absolute, so running
    it twice leaves the same rows."""
    pins = {seq: pin_parse(state.pin) for seq, state in states.items() if state.pin is not None and seq in messages}
    unpinned = [messages[seq].pk for seq, pin in pins.items() if not pin.pinned]
    if unpinned:
        Pin.objects.filter(message_id__in=unpinned).delete()
    pinned = [
        Pin(message=messages[seq], pinned_by_id=(pin.by or {}).get("id"), pinned_at=parse_datetime(pin.at))
        for seq, pin in pins.items()
        if pin.pinned
    ]
    Pin.objects.bulk_create(
        pinned, update_conflicts=True, unique_fields=["message"], update_fields=["pinned_by", "pinned_at"]
    )


def pin_state_of_row(pin: Pin) -> PinState:
    """A ``Pin`` row (its ``pinned_by`` selected) as a pin state."""
    by = {"id": pin.pinned_by_id, "username": pin.pinned_by.get_username()} if pin.pinned_by_id else None
    at = iso_time(pin.pinned_at)
    return PinState(pinned=True, by=by, at=at)
