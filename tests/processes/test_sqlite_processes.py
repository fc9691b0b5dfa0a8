"""The embedded default on real processes: a web server and an rq worker on one SQLite file.

Guarantee: with SQLite (what `make run` uses), the worker persists every room's messages
(public rooms, a private room, a direct conversation), the members' read positions and the
mentions' notifications, and search finds what it wrote; web and worker writing at the same
time never fail with "database is locked". The same tests run on PostgreSQL in the
PostgreSQL leg of the suite; `make test`'s SQLite leg runs them on SQLite (issue 21).
"""

from __future__ import annotations

import asyncio

import pytest

from messaging.models import Message, Notification
from messaging.search import message_search
from rooms.models import Membership, Room
from rooms.services import direct_open, room_create
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes

PER_ROOM = 5


def stored_bodies(room: Room) -> list[str]:
    from django.db import connection

    try:
        return list(Message.objects.filter(room=room).order_by("seq").values_list("body", flat=True))
    finally:
        connection.close()


def test_a_worker_persists_every_rooms_messages_read_positions_and_mentions(cluster, alice, bob, charlie, public_room):
    ops = room_create(creator=alice, name="Ops")
    secret = room_create(creator=alice, name="Secret Plans", visibility=Room.Visibility.PRIVATE)
    Membership.objects.create(room=secret, user=bob)
    direct = direct_open(opener=alice, usernames=["bob"])
    rooms = [public_room, ops, secret, direct]
    port = cluster.start_web()
    cluster.start_worker()
    alice_key, bob_key = session_key_for(alice), session_key_for(bob)

    async def scenario() -> None:
        alice_ws = await NetClient.open(port, alice_key)
        bob_ws = await NetClient.open(port, bob_key)
        for room in rooms:
            await alice_ws.subscribe(room.slug)
            await bob_ws.subscribe(room.slug)
        for room in rooms:
            for i in range(PER_ROOM):
                body = f"{room.name} note {i}" + (" @bob have a look" if i == 2 else "")
                await alice_ws.send_message(room.slug, body)
        await alice_ws.collect(lambda c: len(c.of_type("ack")) >= PER_ROOM * len(rooms))
        await bob_ws.collect(lambda c: len(c.of_type("message")) >= PER_ROOM * len(rooms))  # a read is of seen ones
        for room in rooms:
            await bob_ws.send({"type": "read", "room": room.slug, "seq": PER_ROOM - 1})
        await bob_ws.send({"type": "ping"})
        await bob_ws.recv_type("pong")
        await alice_ws.close()
        await bob_ws.close()

    asyncio.run(scenario())

    for room in rooms:
        expected = [f"{room.name} note {i}" + (" @bob have a look" if i == 2 else "") for i in range(PER_ROOM)]
        wait_until(lambda room=room, expected=expected: stored_bodies(room) == expected, timeout=30)
    # A mention in each room; in the direct conversation every other message notifies bob too
    # (a direct message counts as a mention: messaging.notifications.preferences).
    others = PER_ROOM - 1
    wait_until(lambda: Notification.objects.filter(user=bob).count() == len(rooms) + others, timeout=30)
    mentions = Notification.objects.filter(user=bob, kind=Notification.Kind.MENTION)
    assert sorted(mentions.values_list("room_id", "seq")) == sorted((room.pk, 3) for room in rooms)
    directs = Notification.objects.filter(user=bob, kind=Notification.Kind.DIRECT)
    assert sorted(directs.values_list("room_id", "seq")) == [(direct.pk, s) for s in range(1, PER_ROOM + 1) if s != 3]
    assert not Notification.objects.filter(user=charlie).exists()
    wait_until(lambda: read_positions(bob, rooms) == {room.slug: PER_ROOM - 1 for room in rooms}, timeout=30)
    found = message_search(user=bob, q='"have a look"')
    assert sorted(hit.room_slug for hit in found.hits) == sorted(room.slug for room in rooms)
    assert {hit.room_slug for hit in message_search(user=charlie, q="note").hits} == {public_room.slug, ops.slug}
    assert_no_lock_errors(cluster)


def read_positions(user, rooms: list[Room]) -> dict[str, int]:
    positions = Membership.objects.filter(user=user, room__in=rooms).values_list("room__slug", "last_read_seq")
    return dict(positions)


def assert_no_lock_errors(cluster) -> None:
    for log in cluster.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "database is locked" not in text and "OperationalError" not in text, f"{log.name}:\n{text[-4000:]}"
