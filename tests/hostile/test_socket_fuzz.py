"""Hostile frames over a real socket to a live web process (uvicorn, as the Procfile runs it).

A signed-in member (bob) sends, for every client frame type of docs/protocol.md and for
frames of no known type, frames that Hypothesis spoils: fields dropped, of the wrong type,
added, nested 600 deep, strings of 60 KB, lone surrogates, NUL, right-to-left marks, numbers
past 2**63, `NaN`, text that is not JSON, binary frames, frames over 64 KiB. Each frame is
followed by a ping (or, in a burst, the whole batch is), and what came back before its
pong is the frame's answer. The properties:

- every frame gets an answer, an `error` frame (with a documented code, never
  `unavailable`: nothing is down) or the type's normal reply, or a clean close (1008 for a
  flood); a frame over 64 KiB ends the connection: uvicorn refuses it from its header
  (`--ws-max-size`) with a 1009 close and closes the socket at once, so the client sees the
  1009 or, when the kernel resets a socket closed with the frame's payload unread, no close
  frame at all (tests/faults/test_hostile_frames.py says the same); an answer that carries a
  `ref` carries the frame's;
- the web process never logs a traceback or an ERROR record;
- another member (alice, a process of her own, subscribed to the same rooms) pings in
  round trips all along: none goes unanswered, and none takes 100 ms or more beyond what the
  web process and she waited for a CPU (the machine is shared; tests.hostile.pinger): a
  loop held up by work or by a blocking call counts, a busy machine does not;
- a subscribe replays at most MESSAGE_REPLAY_LIMIT messages and CHANGE_REPLAY_LIMIT changes (no read
  on the socket path grows with the room's history);
- moderation holds: nothing of bob's reaches alice from a room where he is muted, only
  watches, or that is locked (no message, edit or typing), he deletes nothing of hers where
  he moderates below her, and every `ack` he gets names a message of his own (a `client_id`
  of hers is no retry of his);
- afterwards presence (Redis), each room's fan-out (one probe message per room reaches
  exactly the sockets subscribed to it, counted by `pubsub_messages_delivered_total`), and
  the connection and subscription gauges of /metrics are back to what they were before.

The rooms, all alice's but one: a public one (Lobby), a private one bob is in, a private one
of charlie's he is not in, a public one with 8,000 edited messages in PostgreSQL (History),
where a subscribe with an old `rev` reads what changed, and one each where bob is muted,
only watches, moderates, or that is locked. Each kind of frame is fuzzed in turn and every
failure is listed at the end (Hypothesis stops a kind at its first), with the frames that
caused it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from messaging.models import Message
from messaging.store.keys import RoomKeys
from pubsub_site.cluster import ROOT
from pubsub_site.redis.client import get_redis
from rooms.models import Membership, Room
from rooms.moderation import membership_mute, room_lock
from rooms.services import room_create
from rooms.tests.conftest import post_message
from tests.hostile import strategies as s
from tests.hostile.answers import Verdicts, open_socket, throw, until_pong_or_close
from tests.hostile.kit import WebLog, describe, fuzz_settings, metric, scrape, unhandled
from tests.netclient import session_key_for

pytestmark = [pytest.mark.processes, pytest.mark.fuzz]

HISTORY_MESSAGES = 8000
PING_BOUND_MS = 100.0


def seed_history(room: Room, author) -> None:
    """8,000 messages, each edited once (rev = seq), in PostgreSQL only: the first subscriber
    reads the room's counters from there (Redis holds nothing for the room)."""
    now = timezone.now()
    Message.objects.bulk_create(
        [
            Message(
                room=room,
                seq=seq,
                author=author,
                body=f"old message {seq}",
                client_id=uuid.uuid4(),
                sent_at=now,
                edited_at=now,
                rev=seq,
            )
            for seq in range(1, HISTORY_MESSAGES + 1)
        ],
        batch_size=2000,
    )
    redis = get_redis(room.pk)
    for key in redis.scan_iter(match=f"{RoomKeys(room.pk).prefix}*"):
        redis.delete(key)


def explicit_examples(
    kind: str, lobby: str, history: str, forbidden: list[str], ranked: str, alices_ids: dict[str, str]
) -> list[tuple[list[str], list[s.Wire], bool]]:
    """Hostile frames every run sends, whatever Hypothesis draws: a `ref` nested 300 deep on
    a frame of each type (orjson writes 254 levels); for `subscribe` twenty subscribes with
    `rev` 0 to the room of 8,000 edited messages, in one burst; `edit`, `typing` and `send`
    where bob is muted, only watches or the room is locked; `send` with alice's `client_id`s;
    `delete` of the owner's message by bob, a moderator below her."""
    frame_type = kind if kind != "raw" else "ping"
    deep_ref = s.Wire(s.dump({"type": frame_type, "room": lobby, "ref": s.deep(300, "list")}))
    examples = [([lobby], [deep_ref], False)]
    if kind == "subscribe":
        stale = s.Wire(json.dumps({"type": "subscribe", "room": history, "since": HISTORY_MESSAGES, "rev": 0}))
        examples.append(([], [stale] * 20, True))
    if kind in ("edit", "typing", "send"):
        frame = {"edit": {"seq": 1, "body": "rewritten"}, "typing": {}, "send": {"body": "hi", "client_id": None}}[kind]
        for room in forbidden:
            wire = s.Wire(json.dumps({"type": kind, "room": room, **frame, "client_id": s.uuid_text()}))
            examples.append(([room], [wire], False))
    if kind == "delete":
        examples.append(([ranked], [s.Wire(json.dumps({"type": "delete", "room": ranked, "seq": 1}))], False))
    if kind == "send":
        wires = [
            s.Wire(json.dumps({"type": "send", "room": room, "body": "mine", "client_id": client_id}))
            for client_id, room in alices_ids.items()
        ]
        examples.append(([room for room in alices_ids.values() if room not in forbidden], wires, False))
    return examples


def fuzzer(kind: str, frames, preludes, throw_one) -> Callable[[], None]:
    """The Hypothesis test of one kind of frame: each example is a connection."""

    def fuzz(prelude: list[str], wires: list[s.Wire], burst: bool) -> None:
        problems = asyncio.run(throw_one(prelude, wires, burst))
        assert not problems, f"[{kind}] " + "\n".join(problems)

    fuzz = given(prelude=preludes, wires=st.lists(frames, min_size=1, max_size=4), burst=st.booleans())(fuzz)
    return fuzz_settings()(fuzz)


class Pinger:
    """alice, in a process of her own (tests.hostile.pinger)."""

    def __init__(self, port: int, web_pid: int, key: str, rooms: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.pinger", str(port), str(web_pid), key, *rooms],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> dict:
        out, _ = self.process.communicate(input="", timeout=60)
        return json.loads(out.strip().splitlines()[-1])


async def probe(port: int, key: str, rooms: list[str]) -> tuple[float, dict[str, str]]:
    """alice posts one message in each room from a new socket: how many copies the rooms'
    fan-outs delivered (one per socket subscribed to the room, this one included), and the
    messages' client_ids (-> room)."""
    ws = await open_socket(port, key)
    try:
        for slug in rooms:
            await ws.send(json.dumps({"type": "subscribe", "room": slug}))
        await until_pong_or_close(ws, "probe-subscribed")
        before = metric(await asyncio.to_thread(scrape, port), "pubsub_messages_delivered_total")
        ids = {str(uuid.uuid4()): slug for slug in rooms}
        for client_id, slug in ids.items():
            await ws.send(json.dumps({"type": "send", "room": slug, "body": "probe", "client_id": client_id}))
        seen: set[str] = set()
        async with asyncio.timeout(20):
            while seen != set(ids):
                frame = json.loads(await ws.recv())
                assert frame.get("type") != "error", frame
                if frame.get("type") == "message" and frame.get("client_id") in ids:
                    seen.add(frame["client_id"])
        after = metric(await asyncio.to_thread(scrape, port), "pubsub_messages_delivered_total")
        return after - before, ids
    finally:
        await ws.close()


def history_message(port: int, session_key: str, slug: str, seq: int) -> dict | None:
    """Message ``seq`` of the room, from the history endpoint (docs/protocol.md)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/rooms/{slug}/messages/?after={seq - 1}&limit=1",
        headers={"Cookie": f"sessionid={session_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own server)
        messages = json.loads(response.read())["messages"]
    return messages[0] if messages else None


def presence_entries(rooms: list[Room]) -> dict[str, list[str]]:
    return {
        room.slug: sorted(e.decode() for e in get_redis(room.pk).zrange(RoomKeys(room.pk).presence, 0, -1))
        for room in rooms
    }


def settle(read: Callable[[], object], expected: object, timeout: float = 15) -> object:
    """``read()`` once it equals ``expected`` (what a socket releases, it may release a moment
    after its close), or its last value after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def gauges(port: int) -> dict[str, float]:
    values = scrape(port)
    return {name: metric(values, name) for name in ("pubsub_ws_connections", "pubsub_ws_subscriptions")}


def test_it_answers_every_hostile_frame_and_leaves_nothing_behind(cluster, alice, bob, charlie, capsys):
    lobby = room_create(creator=alice, name="Lobby")
    ours = room_create(creator=alice, name="Ours", visibility=Room.Visibility.PRIVATE)
    Membership.objects.create(room=ours, user=bob)
    theirs = room_create(creator=charlie, name="Theirs", visibility=Room.Visibility.PRIVATE)
    history = room_create(creator=alice, name="History")
    seed_history(history, alice)
    # Where bob may not post: muted in one, the other locked; a message of his in each.
    quiet = room_create(creator=alice, name="Quiet")
    frozen = room_create(creator=alice, name="Frozen")
    for room in (quiet, frozen):
        Membership.objects.create(room=room, user=bob)
        post_message(room, bob, "written before")
    membership_mute(room=quiet, actor=alice, user=bob, duration=timedelta(hours=1))
    room_lock(room=frozen, actor=alice)
    watched = room_create(creator=alice, name="Watched")  # bob only watches, since his message
    Membership.objects.create(room=watched, user=bob, role=Membership.Role.SPECTATOR)
    post_message(watched, bob, "written before")
    # bob moderates, below alice: he may not delete what the owner wrote.
    ranked = room_create(creator=alice, name="Ranked")
    Membership.objects.create(room=ranked, user=bob, role=Membership.Role.MODERATOR)
    post_message(ranked, alice, "the owner's word")
    rooms = [lobby, ours, history, quiet, frozen, watched, ranked]  # alice's: the pinger and the probe are in all
    slugs = [r.slug for r in rooms] + [theirs.slug, "no-such-room"]
    known_seqs = [0, 1, 2, 3, 5, HISTORY_MESSAGES - 1, HISTORY_MESSAGES, HISTORY_MESSAGES + 1]

    port = cluster.start_web()
    log = WebLog(cluster, port)
    alice_key, bob_key = session_key_for(alice), session_key_for(bob)
    pinger = Pinger(port, cluster.webs[port].pid, alice_key, [r.slug for r in rooms])
    try:
        # Before: the pinger alone (its subscriptions answered, so its presence is written).
        before_presence = presence_entries(rooms)
        before_gauges = gauges(port)
        probed = [r.slug for r in rooms if r != frozen]  # nobody posts in a locked room
        before_delivered, alices_ids = asyncio.run(probe(port, alice_key, probed))
        tally = Verdicts()
        started = time.monotonic()
        strategies = s.client_frames(slugs, latest=HISTORY_MESSAGES)
        strategies["subscribe"] = st.one_of(
            strategies["subscribe"],
            st.builds(
                lambda slug, since, rev: s.Wire(
                    json.dumps({"type": "subscribe", "room": slug, "since": since, "rev": rev})
                ),
                st.sampled_from(slugs),
                st.sampled_from(known_seqs),
                st.sampled_from(known_seqs),
            ),
        )
        preludes = st.lists(
            st.sampled_from([lobby.slug, ours.slug, quiet.slug, frozen.slug, watched.slug, ranked.slug]),
            unique=True,
            max_size=3,
        )
        theirs_ids = st.sampled_from(sorted(alices_ids))
        strategies["send"] = st.one_of(
            strategies["send"],
            st.builds(  # a client_id of alice's, in her room or another
                lambda slug, client_id: s.Wire(
                    json.dumps({"type": "send", "room": slug, "body": "mine", "client_id": client_id})
                ),
                st.sampled_from(slugs),
                theirs_ids,
            ),
        )
        forbidden_rooms = [quiet.slug, frozen.slug, watched.slug]

        async def one_connection(prelude: list[str], wires: list[s.Wire], burst: bool) -> list[str]:
            tally.examples += 1
            closes = sum(tally.closes.values())
            problems = await throw(port, bob_key, prelude, wires, burst, tally)
            if sum(tally.closes.values()) > closes:
                await asyncio.sleep(0.5)  # what the server logs about a close, it logs as it closes
            if trace := unhandled(log.new()):
                problems.append(f"the web process logged:\n{trace}")
            return problems

        for kind, frames in strategies.items():
            for prelude, wires, burst in explicit_examples(
                kind, lobby.slug, history.slug, forbidden_rooms, ranked.slug, alices_ids
            ):
                if problems := asyncio.run(one_connection(prelude, wires, burst)):
                    tally.failures.append(f"[{kind}, every run] " + "\n".join(problems))
            try:
                fuzzer(kind, frames, preludes, one_connection)()
            except Exception as failure:  # every kind is fuzzed; the failures are listed at the end
                tally.failures.append(f"[{kind}, hypothesis] {describe(failure):.3000}")
        fuzz_seconds = time.monotonic() - started

        # Everything the fuzzer held is released: its sockets are all closed by now.
        after_presence = settle(lambda: presence_entries(rooms), before_presence)
        after_gauges = settle(lambda: gauges(port), before_gauges)
        after_delivered, _ = asyncio.run(probe(port, alice_key, probed))
    finally:
        pings = pinger.stop()
    leftovers = unhandled(log.everything())
    summary = (
        f"socket fuzz ({fuzz_settings().max_examples} examples per kind, {len(strategies)} kinds): "
        f"{tally.frames} frames in {tally.examples} connections in {fuzz_seconds:.1f} s; errors {tally.errors}; "
        f"replies {tally.replies}; closes {tally.closes}; alice's pings {pings}"
    )
    problems = list(tally.failures)
    # A round trip of 100 ms or more counts unless the machine explains it: less than 100 ms of
    # it is left once the time the web process and the pinger waited for a CPU is taken off
    # (tests.hostile.pinger). The longest round trip is reported either way.
    if pings["timeouts"] or not pings["pings"] or pings["stalled"]:
        problems.append(f"another member's ping: {pings} (bound {PING_BOUND_MS} ms beyond the waits for a CPU)")
    if after_presence != before_presence:
        problems.append(f"presence not back: before {before_presence}, after {after_presence}")
    if after_gauges != before_gauges:
        problems.append(f"gauges not back: before {before_gauges}, after {after_gauges}")
    if after_delivered != before_delivered:
        problems.append(
            f"fan-out not back: a probe message per room was delivered {after_delivered:g} times, "
            f"{before_delivered:g} before"
        )
    # Moderation holds: nothing of bob's reached alice where he is muted or only watches or the
    # room is locked, and he deleted nothing of hers where he moderates below her.
    for key, count in sorted(pings["seen"].items()):
        room, frame_type, who = key.split("|")
        # (Claps are no post: a spectator claps, by design.)
        if room in forbidden_rooms and (
            frame_type == "message_updated" or (who == "bob" and frame_type in ("message", "typing"))
        ):
            problems.append(
                f"in {room} (bob muted, watching, or the room locked) alice received {count} {frame_type} "
                f"frame(s) about {who!r}"
            )
        if room == ranked.slug and frame_type == "message_deleted" and who != "bob":
            problems.append(f"in {room} bob, a moderator, deleted {count} message(s) of {who!r}, the owner")
    # Every ack bob got names a message of his own, with the client_id he sent.
    for ack in tally.acks:
        stored = history_message(port, alice_key, ack["room"], ack["seq"])
        if stored is None or stored["author"]["username"] != "bob" or stored["client_id"] != ack["client_id"]:
            problems.append(f"bob's ack {ack} names the message {stored}")
    if leftovers:
        problems.append(f"the web log has:\n{leftovers}")
    with capsys.disabled():
        print("\n" + summary + "".join(f"\n\nFAILED {problem}" for problem in problems))
    assert not problems, summary + "\n\n" + "\n\n".join(problems)
