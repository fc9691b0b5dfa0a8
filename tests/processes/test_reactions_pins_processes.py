"""Emoji reactions and pins across real web processes and a worker: live to the room, recovered
after a reconnect by ``rev``, persisted by the worker, never delivered to an outsider."""

from __future__ import annotations

import asyncio

import pytest

from messaging.models import Pin, Reaction
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def test_reactions_and_pins_reach_the_room_come_back_by_rev_and_are_persisted_not_leaked(
    cluster, alice, bob, charlie, private_room
):
    ports = [cluster.start_web(), cluster.start_web()]
    cluster.start_worker()
    alice_key, bob_key, charlie_key = session_key_for(alice), session_key_for(bob), session_key_for(charlie)
    room = private_room.slug

    async def scenario():
        author = await NetClient.open(ports[0], alice_key)
        await author.subscribe(room)
        reader = await NetClient.open(ports[1], bob_key)
        await reader.subscribe(room)
        outsider = await NetClient.open(ports[1], charlie_key)
        await outsider.send({"type": "subscribe", "room": room})
        refused = await outsider.recv_type("error")
        for i in range(3):
            await author.send_message(room, f"m{i}")
        await reader.collect(lambda c: len(c.of_type("message")) == 3)
        # Live: bob's reaction reaches alice's process.
        await reader.send({"type": "react", "room": room, "seq": 1, "emoji": "🎉", "on": True})
        live = await author.recv_type("reactions")
        last = reader.of_type("message")[-1]
        since, rev = last["seq"], last["rev"]
        await reader.close()

        # While bob is away: reactions on and off, a pin, an unpin; and the outsider tries.
        for frame in (
            {"type": "react", "room": room, "seq": 2, "emoji": "👍", "on": True},
            {"type": "react", "room": room, "seq": 1, "emoji": "🎉", "on": True},
            {"type": "pin", "room": room, "seq": 2, "pinned": True},
            {"type": "pin", "room": room, "seq": 3, "pinned": True},
            {"type": "pin", "room": room, "seq": 3, "pinned": False},
        ):
            await author.send(frame)
            await author.recv_type("pinned" if frame["type"] == "pin" else "reactions")
        for frame in (
            {"type": "react", "room": room, "seq": 1, "emoji": "👎", "on": True},
            {"type": "pin", "room": room, "seq": 1, "pinned": True},
        ):
            await outsider.send(frame)
            assert (await outsider.recv_type("error"))["code"] == "not_subscribed"

        back = await NetClient.open(ports[0], bob_key)
        await back.send({"type": "subscribe", "room": room, "since": since, "rev": rev})
        subscribed = await back.recv_type("subscribed")
        await back.collect(lambda c: len(c.of_type("reactions")) + len(c.of_type("pinned")) >= 4)
        await asyncio.sleep(0.5)
        try:
            while True:
                await outsider.recv(timeout=0.3)
        except TimeoutError:
            pass
        for client in (author, back, outsider):
            await client.close()
        return refused, live, subscribed, back, outsider, rev

    refused, live, subscribed, back, outsider, rev = asyncio.run(scenario())
    assert refused["code"] == "not_found"
    assert [(r["emoji"], r["count"]) for r in live["reactions"]] == [("🎉", 1)]
    assert subscribed["recovered"] and subscribed["rev"] == rev + 6  # bob's own reaction, then five
    recovered = [(f["type"], f["seq"]) for f in back.frames if f["type"] in ("reactions", "pinned")]
    assert recovered == [("reactions", 1), ("reactions", 2), ("pinned", 2), ("pinned", 3)]
    by_seq = {(f["type"], f["seq"]): f for f in back.frames if f["type"] in ("reactions", "pinned")}
    assert [(r["emoji"], r["count"]) for r in by_seq["reactions", 1]["reactions"]] == [("🎉", 2)]
    assert [(r["emoji"], r["count"]) for r in by_seq["reactions", 2]["reactions"]] == [("👍", 1)]
    assert by_seq["pinned", 2]["pinned"] and not by_seq["pinned", 3]["pinned"]
    assert not [f for f in outsider.frames if f["type"] not in ("error",)], outsider.frames

    def persisted():
        reactions = sorted(Reaction.objects.values_list("message__seq", "user__username", "emoji"))
        pins = list(Pin.objects.values_list("message__seq", "pinned_by__username"))
        return (reactions, pins) == ([(1, "alice", "🎉"), (1, "bob", "🎉"), (2, "alice", "👍")], [(2, "alice")])

    wait_until(persisted)
    print("reactions and pins: live across processes, recovered by rev, persisted by the worker, none to outsiders")
