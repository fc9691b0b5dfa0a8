"""Threads across real web processes and the worker: a thread reply and its root's summary
recovered after a reconnect (by `since` and `rev`, on another process), persisted with the
thread's followers, and never sent to an outsider."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from messaging.models import Message, ThreadFollow
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def test_thread_replies_and_summaries_are_recovered_persisted_and_kept_from_outsiders(
    cluster, alice, bob, charlie, private_room
):
    ports = [cluster.start_web(), cluster.start_web()]
    cluster.start_worker()
    alice_key, bob_key, charlie_key = (session_key_for(u) for u in (alice, bob, charlie))
    room = private_room.slug

    async def thread_reply(client: NetClient, root: int, body: str, also_in_room: bool = False) -> dict:
        client_id = str(uuid.uuid4())
        frame = {"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id, "thread": root}
        if also_in_room:
            frame["also_in_room"] = True
        await client.send(frame)
        while True:
            answer = await client.recv()
            if answer["type"] in ("ack", "error") and answer.get("ref") == client_id:
                return answer

    async def scenario():
        outsider = await NetClient.open(ports[0], charlie_key)
        await outsider.send({"type": "subscribe", "room": room})
        refused = await outsider.recv_type("error")
        bob_ws = await NetClient.open(ports[1], bob_key)
        await bob_ws.subscribe(room)
        alice_ws = await NetClient.open(ports[0], alice_key)
        await alice_ws.subscribe(room)
        await alice_ws.send_message(room, "The plan, in a thread")
        await alice_ws.recv_type("ack")
        # A thread (as a `reply_to`) names a message the replier's connection has seen.
        await bob_ws.collect(lambda c: any(m["seq"] == 1 for m in c.of_type("message")))
        first = await thread_reply(bob_ws, 1, "First thought")
        summary = await alice_ws.recv_type("thread_summary")
        await alice_ws.close()  # alice is away: she has seq 2 and the rev of its summary
        away = (2, summary["rev"])
        await bob_ws.collect(lambda c: any(m["seq"] == 2 for m in c.of_type("message")))
        more = [
            await thread_reply(bob_ws, 2, "Second, into the same thread"),
            await thread_reply(bob_ws, 1, "Third", True),
        ]
        back = await NetClient.open(ports[1], alice_key)  # on the other process
        await back.send({"type": "subscribe", "room": room, "since": away[0], "rev": away[1]})
        await back.collect(lambda c: len(c.of_type("message")) == 2 and c.of_type("thread_summary"), timeout=10)
        # Nothing reached the outsider's socket meanwhile.
        try:
            while True:
                await outsider.recv(timeout=0.5)
        except TimeoutError:
            pass
        for client in (outsider, bob_ws, back):
            await client.close()
        return refused, first, more, back, outsider

    refused, first, more, back, outsider = asyncio.run(scenario())
    assert refused["code"] in ("not_found", "forbidden")
    assert [first["seq"], *(m["seq"] for m in more)] == [2, 3, 4]
    replayed = back.of_type("message")
    assert [(m["seq"], m["thread"], m["also_in_room"]) for m in replayed] == [(3, 1, False), (4, 1, True)]
    [summary] = back.of_type("thread_summary")
    assert summary["seq"] == 1 and summary["count"] == 3 and summary["last_seq"] == 4
    assert [u["username"] for u in summary["repliers"]] == ["bob"]
    assert not [f for f in outsider.frames if f["type"] in ("message", "thread_summary")]

    def rows():
        found = Message.objects.filter(room=private_room).order_by("seq")
        found = list(found.values_list("seq", "thread_seq", "also_in_room"))
        return found if len(found) == 4 else None

    def follows_written():
        found = ThreadFollow.objects.filter(room=private_room).values_list(
            "user__username", "root_seq", "last_read_seq"
        )
        found = sorted(found)
        return found if len(found) == 2 and found[1][2] == 4 else None

    assert wait_until(rows) == [(1, None, False), (2, 1, False), (3, 1, False), (4, 1, True)]
    follows = wait_until(follows_written)
    assert follows == [("alice", 1, 0), ("bob", 1, 4)]
    assert not ThreadFollow.objects.filter(user=charlie).exists()
    # The root's summary change reached PostgreSQL as a change of the root (its rev).
    root_rev = wait_until(lambda: Message.objects.get(room=private_room, seq=1).rev >= summary["rev"] or None)
    assert root_rev
    print("thread replies 2-4 replayed on another process with their summary (3 replies); persisted with 2 followers")
