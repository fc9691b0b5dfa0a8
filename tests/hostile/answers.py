"""One connection of hostile frames (tests/hostile/test_socket_fuzz.py): subscribe to the
prelude's rooms, send the frames, each followed by a ping (or the whole batch, in a burst), and
judge what came back before the pong: an answer to every frame, an `error` with a documented
code or the type's normal reply, or a clean close; a frame over 64 KiB closed with 1009; the
frame's `ref` carried back; a subscribe's replay within MESSAGE_REPLAY_LIMIT and
CHANGE_REPLAY_LIMIT. Verdicts tallies what came back over all the connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import orjson
from django.conf import settings as django_settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.hostile import strategies as s

ERROR_CODES = {
    "bad_request",
    "unknown_type",
    "not_found",
    "forbidden",
    "not_subscribed",
    "too_large",
    "rate_limited",
    "room_locked",
    "muted",
    "banned",
}  # docs/protocol.md's codes but `unavailable`: no backing service fails here
REPLAYED = ("message", "message_updated", "message_deleted", "claps")
CLEAN_CLOSES = {1000, 1008}  # 1009 only for a frame over 64 KiB
ANSWER_TIMEOUT = 10.0


def refs_equal(sent: object, echoed: object) -> bool:
    """The same JSON value (``True == 1`` in Python, not in JSON)."""
    return type(sent) is type(echoed) and sent == echoed


def echoable(ref: object) -> bool:
    """A `ref` the server must copy into its answer: a string or a number of at most 64
    characters (issue 20; a longer or other `ref` may be refused)."""
    if isinstance(ref, str):
        return len(ref) <= 64
    return isinstance(ref, int | float) and not isinstance(ref, bool) and len(orjson.dumps(ref)) <= 64


@dataclass
class Verdicts:
    frames: int = 0
    examples: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    acks: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def open_socket(port: int, key: str) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/ws/",
        additional_headers={"Cookie": f"sessionid={key}"},
        max_size=2**25,
        open_timeout=20,
    )


async def until_pong(ws: ClientConnection, sentinel: str) -> list[dict]:
    """Frames received until the pong for ``sentinel`` (excluded)."""
    got: list[dict] = []
    async with asyncio.timeout(ANSWER_TIMEOUT):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "pong" and frame.get("ref") == sentinel:
                return got
            got.append(frame)


def judge_answers(wires: list[s.Wire], received: list[dict], tally: Verdicts) -> list[str]:
    """What is wrong with the answers to ``wires`` (sent together, none oversized)."""
    problems = []
    needed = 0
    reply_types = set()
    refs = []
    for wire in wires:
        frame = wire.frame
        kind = frame.get("type") if frame is not None else None
        if frame is None or not isinstance(kind, str) or kind not in s.CLIENT_FRAMES:
            needed += 1  # only an error answers it
        elif s.CLIENT_FRAMES[kind] is not None:
            needed += 1
            reply_types.add(s.CLIENT_FRAMES[kind])
        if frame is not None and frame.get("ref") is not None:
            refs.append(frame["ref"])
    answers = [f for f in received if f.get("type") == "error" or f.get("type") in reply_types]
    for answer in answers:
        if answer["type"] == "error":
            tally.errors[answer.get("code")] = tally.errors.get(answer.get("code"), 0) + 1
            if answer.get("code") not in ERROR_CODES:
                problems.append(f"error code {answer.get('code')!r} ({answer.get('detail')!r})")
        else:
            tally.replies += 1
            if answer["type"] == "ack":
                tally.acks.append(answer)
        if "ref" in answer and not any(refs_equal(ref, answer["ref"]) for ref in refs):
            problems.append(f"an answer carries a ref the frame did not have: {answer!r:.300}")
    # No read on the socket path grows with the room's history: a subscribe replays at most
    # MESSAGE_REPLAY_LIMIT messages and CHANGE_REPLAY_LIMIT changes, else it answers
    # `recovered: false`.
    subscribes = sum(1 for w in wires if (w.frame or {}).get("type") == "subscribe")
    for replayed_type in REPLAYED if subscribes else ():
        replayed = sum(1 for f in received if f.get("type") == replayed_type)
        name = "MESSAGE_REPLAY_LIMIT" if replayed_type == "message" else "CHANGE_REPLAY_LIMIT"
        limit = getattr(django_settings, name)
        if replayed > subscribes * limit:
            problems.append(
                f"{subscribes} subscribe(s) answered with {replayed} {replayed_type} frames "
                f"(more than {name} = {limit} each)"
            )
    if len(answers) < needed:
        problems.append(f"{needed} frame(s) need an answer, {len(answers)} came: {received!r:.400}")
    if len(wires) == 1 and refs and echoable(refs[0]) and answers and not any("ref" in a for a in answers):
        problems.append(f"the answer does not carry the frame's ref {refs[0]!r}: {answers!r:.300}")
    return problems


async def throw(
    port: int, key: str, prelude: list[str], wires: list[s.Wire], burst: bool, tally: Verdicts
) -> list[str]:
    """One connection: subscribe to the prelude's rooms, send the frames, judge the answers."""
    problems: list[str] = []
    ws = await open_socket(port, key)
    try:
        for slug in prelude:
            await ws.send(json.dumps({"type": "subscribe", "room": slug}))
        if prelude:
            await until_pong_or_close(ws, "prelude")
        batches = [wires] if burst else [[wire] for wire in wires]
        for n, batch in enumerate(batches):
            sentinel = f"fuzz-sentinel-{n}"
            tally.frames += len(batch)
            try:
                for wire in batch:
                    await ws.send(wire.payload)
                    if wire.oversized:
                        break
                await ws.send(json.dumps({"type": "ping", "ref": sentinel}))
                received = await until_pong(ws, sentinel)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                tally.closes[code] = tally.closes.get(code, 0) + 1
                oversized = any(w.oversized for w in batch)
                if oversized and code not in (1009, None):
                    problems.append(f"a frame over 64 KiB closed with {code}, not 1009: {batch!r:.600}")
                elif not oversized and code not in CLEAN_CLOSES:
                    problems.append(f"the connection was closed with {code} (not clean): {batch!r:.600}")
                return problems
            except TimeoutError:
                problems.append(f"no answer within {ANSWER_TIMEOUT} s: {batch!r:.600}")
                return problems
            if any(w.oversized for w in batch):
                problems.append(f"a frame over 64 KiB did not close the connection: {batch!r:.300}")
                return problems
            problems += [f"{p}; frames {batch!r:.600}" for p in judge_answers(batch, received, tally)]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
    return problems


async def until_pong_or_close(ws: ClientConnection, sentinel: str) -> None:
    await ws.send(json.dumps({"type": "ping", "ref": sentinel}))
    await until_pong(ws, sentinel)
