"""The drain of a web process (messaging.realtime.drain), in one process: its moments are
spread over the drain, and a socket told to leave answers what it had read first, sends
`reconnect` and closes with 1012, and handles nothing it reads after. (SIGTERM itself, on
real processes: tests/faults/test_graceful_restart.py.)"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async

from messaging.realtime import drain
from messaging.tests.wsclient import connected
from protocol.events import SOCKET_DRAIN
from rooms.services import room_create
from tests.faults.kit import room_latest


class TimedInbox(asyncio.Queue):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def put_nowait(self, item) -> None:
        self.at.append(asyncio.get_running_loop().time())
        super().put_nowait(item)


async def test_the_drain_asks_each_socket_once_at_moments_spread_evenly_over_its_duration():
    sockets = drain.Drain()
    inboxes = {object(): TimedInbox() for _ in range(10)}
    for consumer, inbox in inboxes.items():
        sockets.opened(consumer, inbox)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def leave_when_asked() -> None:  # the consumers close once told
        while sockets.sockets:
            for consumer, inbox in list(inboxes.items()):
                if inbox.qsize():
                    sockets.closed(consumer)
            await asyncio.sleep(0.005)

    closer = asyncio.create_task(leave_when_asked())
    await sockets.run(0.5)
    await closer
    moments = sorted(at - start for inbox in inboxes.values() for at in inbox.at)
    assert len(moments) == 10 and all(inbox.get_nowait() is SOCKET_DRAIN for inbox in inboxes.values())
    assert moments[0] < 0.05
    for index, moment in enumerate(moments):  # the i-th at i/10 of the drain, give or take
        assert index * 0.05 - 0.01 <= moment <= index * 0.05 + 0.1, moments
    assert loop.time() - start < 0.5 + 0.2  # done once the last had closed, not at the grace's end


async def test_a_socket_that_opens_during_the_drain_is_asked_to_leave_at_once():
    sockets = drain.Drain()
    sockets.draining = True
    inbox = asyncio.Queue()
    sockets.opened(object(), inbox)
    assert inbox.get_nowait() is SOCKET_DRAIN


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_a_drained_socket_acks_what_it_read_then_says_reconnect_and_closes_with_1012(settings, make_user):
    settings.WS_RECONNECT_JITTER_MS = 200
    alice = await database_sync_to_async(make_user)("alice")
    room = await database_sync_to_async(room_create)(creator=alice, name="Closing time")
    client = await connected(alice)
    await client.subscribe(room.slug)
    inbox = drain.sockets().sockets[next(iter(drain.sockets().sockets))]
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await client.send({"type": "send", "room": room.slug, "body": "read before", "client_id": first})
    inbox.put_nowait(SOCKET_DRAIN)  # behind the send, as the drain puts it
    await client.send({"type": "send", "room": room.slug, "body": "read after", "client_id": second})
    frames = []
    while True:
        output = await client.ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            break
        frames.append(json.loads(output["text"]))
    assert output["code"] == 1012
    kinds = [f["type"] for f in frames]
    assert [f["client_id"] for f in frames if f["type"] == "ack"] == [first]
    assert kinds.index("ack") < kinds.index("reconnect")
    assert 0 <= frames[kinds.index("reconnect")]["after_ms"] <= 200
    await client.ws.disconnect()
    assert await database_sync_to_async(room_latest)(room.pk, settings.REDIS_URL) == 1  # "read after": never stored
    assert drain.sockets().sockets == {}
