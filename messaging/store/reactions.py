"""Emoji reactions in Redis: one summary per message, changed in one step with the room's ``rev``.

A toggle takes the room's next ``rev`` and scores the message in ``changes`` with it, like
a clap (messaging.store.changes), so that a client away gets the summary back by ``rev``
and the persistence job copies it to PostgreSQL (``reactions_persist``: the rows made to
match the summary, whatever ran before). The summary of a message (``RoomKeys.reactions``)
is ``{"rev", "r": [[emoji, [[user id, username], …]], …]}``, emoji in the order they were
first put on, reactors in the order they came; an entry stays (empty) once made.

After Redis lost its data, a message PostgreSQL has is seeded from its rows before its
first toggle (``NEEDS_SEED``): the caps and the counts stay those of all its reactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from messaging.models import Message, Reaction
from messaging.store.changes import MARK_DIRTY_LUA, RedisState
from messaging.store.keys import DIRTY_KEY, SCHEDULED_KEY, SCHEDULED_TTL_MS, RoomKeys
from messaging.store.lua import LuaScript
from pubsub_site.redis.client import get_async_redis

# Statuses of the toggle besides messaging.store.changes' (NOT_INITIALISED, NO_SUCH_MESSAGE,
# ALREADY_DELETED): 0 nothing to change, 1 changed.
NEEDS_SEED = -5
TOO_MANY_EMOJI = -6
TOO_MANY_OF_USER = -7

# KEYS: seq rev deletions persisted reactions changes dirty scheduled
# ARGV: seq user_id username emoji on max_emoji max_per_user seed room_id ttl
TOGGLE_SCRIPT = (
    """
local seq = tonumber(ARGV[1])
local latest = redis.call('GET', KEYS[1])
if not latest then return {-1} end
if seq < 1 or seq > tonumber(latest) then return {-3} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {-4} end
local raw = redis.call('HGET', KEYS[5], ARGV[1])
if not raw then
  if ARGV[8] ~= '' then
    raw = ARGV[8]
  elseif seq <= tonumber(redis.call('GET', KEYS[4]) or '0') then
    return {-5}
  else
    raw = '{"rev":0,"r":[]}'
  end
end
local summary = cjson.decode(raw)
local entries = summary['r']
if type(entries) ~= 'table' then entries = {} end
local user = tonumber(ARGV[2])
local found, mine = nil, 0
for i, entry in ipairs(entries) do
  for j, reactor in ipairs(entry[2]) do
    if tonumber(reactor[1]) == user then
      mine = mine + 1
      if entry[1] == ARGV[4] then found = {i, j} end
    end
  end
end
if ARGV[5] == '1' then
  if found then return {0, summary['rev'], raw} end
  local slot = nil
  for i, entry in ipairs(entries) do
    if entry[1] == ARGV[4] then slot = entry end
  end
  if not slot then
    if #entries >= tonumber(ARGV[6]) then return {-6} end
    slot = {ARGV[4], {}}
    table.insert(entries, slot)
  end
  if mine >= tonumber(ARGV[7]) then return {-7} end
  table.insert(slot[2], {user, ARGV[3]})
else
  if not found then return {0, summary['rev'], raw} end
  table.remove(entries[found[1]][2], found[2])
  if #entries[found[1]][2] == 0 then table.remove(entries, found[1]) end
end
local rev = redis.call('INCR', KEYS[2])
summary['rev'] = rev
summary['r'] = entries
local encoded = cjson.encode(summary)
redis.call('HSET', KEYS[5], ARGV[1], encoded)
redis.call('ZADD', KEYS[6], rev, ARGV[1])
"""
    + MARK_DIRTY_LUA
    + """
return {1, rev, encoded, schedule}
"""
)

_toggle = LuaScript(TOGGLE_SCRIPT)


@dataclass(frozen=True)
class ReactionSummary:
    """A message's reactions: (emoji, ((user id, username), …)) in order, and the ``rev``
    that set them (0: not known, as read from PostgreSQL)."""

    entries: tuple[tuple[str, tuple[tuple[int, str], ...]], ...]
    rev: int = 0


EMPTY = ReactionSummary(entries=())


def reactions_parse(raw: bytes | str) -> ReactionSummary:
    data = orjson.loads(raw)
    # Lua's cjson writes an empty array as `{}`.
    entries = data.get("r") or []
    return ReactionSummary(
        entries=tuple((emoji, tuple((int(uid), str(name)) for uid, name in reactors)) for emoji, reactors in entries),
        rev=int(data.get("rev") or 0),
    )


def summary_encode(summary: ReactionSummary) -> str:
    return orjson.dumps({"rev": summary.rev, "r": [[e, [list(r) for r in rs]] for e, rs in summary.entries]}).decode()


@dataclass(frozen=True)
class ToggleResult:
    status: int
    rev: int = 0
    summary: ReactionSummary = EMPTY
    schedule_persist: bool = False


async def toggle(
    *,
    room_id: int,
    seq: int,
    user_id: int,
    username: str,
    emoji: str,
    on: bool,
    max_emoji: int,
    max_per_user: int,
    seed: ReactionSummary | None = None,
) -> ToggleResult:
    keys = RoomKeys(room_id)
    reply = await _toggle.arun(
        get_async_redis(room_id),
        keys=(
            keys.seq,
            keys.rev,
            keys.deletions,
            keys.persisted,
            keys.reactions,
            keys.changes,
            DIRTY_KEY,
            SCHEDULED_KEY,
        ),
        args=(
            seq,
            user_id,
            username,
            emoji,
            "1" if on else "0",
            max_emoji,
            max_per_user,
            summary_encode(seed) if seed is not None else "",
            room_id,
            SCHEDULED_TTL_MS,
        ),
    )
    status = int(reply[0])
    if status < 0:
        return ToggleResult(status=status)
    if status == 0:
        return ToggleResult(status=0, rev=int(reply[1] or 0), summary=reactions_parse(reply[2]))
    return ToggleResult(
        status=1, rev=int(reply[1]), summary=reactions_parse(reply[2]), schedule_persist=bool(int(reply[3]))
    )


def summary_of_rows(rows: list[Reaction]) -> ReactionSummary:
    """The summary of a message's PostgreSQL rows (their ``user`` selected), oldest first."""
    by_emoji: dict[str, list[tuple[int, str]]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.pk)):
        by_emoji.setdefault(row.emoji, []).append((row.user_id, row.user.get_username()))
    return ReactionSummary(entries=tuple((e, tuple(rs)) for e, rs in by_emoji.items()))


def summary_from_database(*, room_id: int, seq: int) -> ReactionSummary:
    """A message's summary as PostgreSQL has it (the seed after Redis lost its data)."""
    rows = list(Reaction.objects.filter(message__room_id=room_id, message__seq=seq).select_related("user"))
    return summary_of_rows(rows)


def reactions_persist(*, messages: dict[int, Message], states: dict[int, RedisState]) -> None:
    """Make the rows of these messages (by seq) match the summaries Redis had (``states``,
    read with the rest of their state); the caller holds a transaction. Absolute, so running
    it twice leaves the same rows."""
    summaries = {
        seq: reactions_parse(state.reactions)
        for seq, state in states.items()
        if state.reactions is not None and seq in messages
    }
    if not summaries:
        return
    # In the summary's order: rows made in one batch keep it (by pk) when read back.
    wanted = {
        (messages[seq].pk, user_id, emoji): None
        for seq, summary in summaries.items()
        for emoji, reactors in summary.entries
        for user_id, _ in reactors
    }
    message_ids = [messages[seq].pk for seq in summaries]
    existing = {
        (message_id, user_id, emoji): pk
        for pk, message_id, user_id, emoji in Reaction.objects.filter(message_id__in=message_ids).values_list(
            "pk", "message_id", "user_id", "emoji"
        )
    }
    gone = [pk for key, pk in existing.items() if key not in wanted]
    if gone:
        Reaction.objects.filter(pk__in=gone).delete()
    Reaction.objects.bulk_create(
        [Reaction(message_id=m, user_id=u, emoji=e) for m, u, e in wanted if (m, u, e) not in existing],
        ignore_conflicts=True,
    )
