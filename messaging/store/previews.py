"""A message's link card in Redis: a change like an edit, with the room's next ``rev``.

The room's ``previews`` hash maps a seq to its entry ``{"url", "card", "removed", "rev"}``:
``card`` is the wire's ``preview`` (protocol.wire.message_preview_wire) or null (the link was
edited away, or the card was removed). Writing one takes the room's next ``rev`` and scores
the message in ``changes``, in one script, so a client that was away gets it back by ``rev``
(messaging.selectors.changes_after) and the persistence job copies it to
``MessagePreview`` rows (``previews_persist``) with the message's other changes.

What the script guarantees: a card fetched for a body is set only while the message still
has that body (the rev of its last edit is the one the job was given) and is not deleted; a
removed card stays removed for its URL; removing needs a card to remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from messaging.models import Message, MessagePreview
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from pubsub_site.redis.client import get_redis

SET, CLEAR, REMOVE = "set", "clear", "remove"

NOT_INITIALISED = -1
NO_SUCH_MESSAGE = -3
DELETED = -4
STALE = -5  # the message was edited since the job was queued: that job's result is not its
REMOVED = -6  # the author (or a moderator) removed the card of this URL
NO_CARD = -7  # nothing to remove

# KEYS: seq rev deletions edits previews changes dirty scheduled
# ARGV: seq entry-json mode expected-edit-rev room_id ttl
PREVIEW_SCRIPT = """
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
local seq = tonumber(ARGV[1])
if seq < 1 or seq > tonumber(latest) then return {-3} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {-4} end
local entry = cjson.decode(ARGV[2])
local mode = ARGV[3]
local current = redis.call('HGET', KEYS[5], ARGV[1])
if current then current = cjson.decode(current) end
if mode == 'remove' then
  if not current or current['removed'] or current['card'] == cjson.null then return {-7} end
  entry['url'] = current['url']
else
  local edit = redis.call('HGET', KEYS[4], ARGV[1])
  local edit_rev = 0
  if edit then edit_rev = tonumber(cjson.decode(edit)['rev']) end
  if edit_rev ~= tonumber(ARGV[4]) then return {-5} end
  if current and current['removed'] and current['url'] == entry['url'] then return {-6} end
  if mode == 'clear' and (not current or current['card'] == cjson.null) then return {0, 0, 0} end
end
local rev = redis.call('INCR', KEYS[2])
entry['rev'] = rev
redis.call('HSET', KEYS[5], ARGV[1], cjson.encode(entry))
redis.call('ZADD', KEYS[6], rev, ARGV[1])
redis.call('SADD', KEYS[7], ARGV[5])
local schedule = 0
if redis.call('SET', KEYS[8], '1', 'NX', 'PX', tonumber(ARGV[6])) then schedule = 1 end
return {1, rev, schedule}
"""

_preview = LuaScript(PREVIEW_SCRIPT)


def previews_key(room_id: int) -> str:
    return f"{RoomKeys(room_id).prefix}:previews"  # seq -> {"url", "card", "removed", "rev"}


@dataclass(frozen=True)
class PreviewResult:
    status: int  # 1: written; 0: nothing to do; < 0: refused (the constants above)
    rev: int = 0
    schedule_persist: bool = False


def preview_write(*, room_id: int, seq: int, mode: str, url: str = "", card: dict | None = None, edit_rev: int = 0):
    """Set (``SET``), clear (``CLEAR``: the body has no card any more) or remove (``REMOVE``:
    its author's or a moderator's act) the card of message ``seq``; ``edit_rev`` is the rev of
    the message's last edit when the card was fetched (0: never edited)."""
    keys = RoomKeys(room_id)
    entry = {"url": url, "card": card if mode == SET else None, "removed": mode == REMOVE}
    reply = _preview.run(
        get_redis(room_id),
        keys=(
            keys.seq,
            keys.rev,
            keys.deletions,
            keys.edits,
            previews_key(room_id),
            keys.changes,
            DIRTY_KEY,
            SCHEDULED_KEY,
        ),
        args=(seq, orjson.dumps(entry), mode, edit_rev, room_id, SCHEDULED_TTL_MS),
    )
    status = int(reply[0])
    if status < 0:
        return PreviewResult(status=status)
    return PreviewResult(status=status, rev=int(reply[1]), schedule_persist=bool(int(reply[2])))


def preview_entry(*, room_id: int, seq: int) -> dict | None:
    raw = get_redis(room_id).hget(previews_key(room_id), seq)
    return orjson.loads(raw) if raw else None


def edit_rev_of(*, room_id: int, seq: int) -> int:
    """The rev of the message's last edit in Redis (0: not edited)."""
    raw = get_redis(room_id).hget(RoomKeys(room_id).edits, seq)
    return int(orjson.loads(raw)["rev"]) if raw else 0


def row_preview(message: Message) -> tuple[dict | None, int | None]:
    """(card, rev) of a PostgreSQL row whose ``link_preview`` was read with it
    (``select_related``); (None, None) when it was not read or there is none."""
    if not Message.link_preview.is_cached(message):
        return None, None
    try:
        stored = message.link_preview
    except MessagePreview.DoesNotExist:
        return None, None
    return (None if stored.removed else stored.card), stored.rev


def previews_persist(*, messages: dict[int, Message], entries: dict[int, dict]) -> None:
    """Write the Redis entries of these messages (seq -> entry) to their ``MessagePreview``
    rows: absolute values, so writing them twice leaves the same rows (the persistence job)."""
    rows = [
        MessagePreview(
            message=messages[seq],
            url=entry["url"],
            card=entry["card"],
            removed=bool(entry["removed"]),
            rev=entry["rev"],
        )
        for seq, entry in entries.items()
        if seq in messages
    ]
    if rows:
        MessagePreview.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["message"],
            update_fields=["url", "card", "removed", "rev"],
        )
