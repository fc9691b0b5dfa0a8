"""A message's reactions and pin as Redis holds them, laid over the state read elsewhere.

Redis has the newest reactions summary and pin of a message it knows of (messaging.store.reactions,
messaging.store.pins); PostgreSQL's rows are the fallback, read with the message. Redis's are
read in the round trip that reads the rest of the messages' state (messaging.store.changes.states_of),
on the read paths only (history, replay, recovery by ``rev``): the send path never comes here.
"""

from __future__ import annotations

import dataclasses

from messaging.store.changes import RedisState
from messaging.store.pins import PinState, pin_parse
from messaging.store.reactions import reactions_parse
from protocol.wire import MessageState


def pin_wire_state(state: PinState) -> dict:
    return {"pinned": state.pinned, "by": state.by, "at": state.at}


def with_extras(
    *, pairs: list[tuple[dict, MessageState]], states: dict[int, RedisState]
) -> list[tuple[dict, MessageState]]:
    """The pairs, each state with the message's reactions and pin as Redis has them (where it
    has them), from ``states`` (messaging.store.changes.states_of read them with the rest)."""
    merged = []
    for record, state in pairs:
        found = states.get(record["seq"])
        if found is not None and found.reactions is not None:
            summary = reactions_parse(found.reactions)
            state = dataclasses.replace(
                state, reactions=summary.entries, reaction_rev=summary.rev, rev=max(state.rev or 0, summary.rev)
            )
        if found is not None and found.pin is not None:
            pin = pin_parse(found.pin)
            state = dataclasses.replace(
                state, pin=pin_wire_state(pin), pin_rev=pin.rev, rev=max(state.rev or 0, pin.rev)
            )
        merged.append((record, state))
    return merged
