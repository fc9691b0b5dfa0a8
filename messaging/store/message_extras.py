"""A message's reactions and pin as Redis holds them, laid over the state read elsewhere.

Redis has the newest reactions summary and pin of a message it knows of (messaging.store.reactions,
messaging.store.pins); PostgreSQL's rows are the fallback, read with the message. One round
trip for any number of messages, and only on the read paths (history, replay, recovery by
``rev``): the send path never comes here.
"""

from __future__ import annotations

import dataclasses

from messaging.store.keys import RoomKeys
from messaging.store.pins import PinState, pin_parse
from messaging.store.reactions import summary_parse
from protocol.wire import MessageState
from pubsub_site.redis_client import get_redis


def pin_wire_state(state: PinState) -> dict:
    return {"pinned": state.pinned, "by": state.by, "at": state.at}


def with_extras(*, room_id: int, pairs: list[tuple[dict, MessageState]]) -> list[tuple[dict, MessageState]]:
    """The pairs, each state with the message's reactions and pin as Redis has them (where it has them)."""
    if not pairs:
        return pairs
    seqs = [record["seq"] for record, _ in pairs]
    keys = RoomKeys(room_id)
    pipe = get_redis(room_id).pipeline(transaction=True)
    pipe.hmget(keys.reactions, seqs)
    pipe.hmget(keys.pins, seqs)
    reactions, pins = pipe.execute()
    merged = []
    for (record, state), raw_reactions, raw_pin in zip(pairs, reactions, pins, strict=True):
        if raw_reactions is not None:
            summary = summary_parse(raw_reactions)
            state = dataclasses.replace(
                state, reactions=summary.entries, reaction_rev=summary.rev, rev=max(state.rev or 0, summary.rev)
            )
        if raw_pin is not None:
            pin = pin_parse(raw_pin)
            state = dataclasses.replace(
                state, pin=pin_wire_state(pin), pin_rev=pin.rev, rev=max(state.rev or 0, pin.rev)
            )
        merged.append((record, state))
    return merged
