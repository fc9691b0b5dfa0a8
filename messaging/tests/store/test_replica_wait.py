"""REDIS_WAIT_REPLICAS: an ack means the message is on a replica too, and a message goes out
to subscribers only once a replica has it (messaging.services.message_send, buffer.append).
On Redis servers of the test's own: a primary, and a replica started when the test says."""

import asyncio
import time
import uuid

import pytest
from channels.db import database_sync_to_async

from messaging import services
from messaging.models import Message
from messaging.selectors import room_counters
from messaging.store import buffer
from messaging.store.persistence import messages_persist_room
from tests.faults.kit import RedisServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


def wait_linked(primary: RedisServer, timeout: float = 20) -> None:
    """Until the primary counts a replica in WAIT (it does once the replica has loaded its
    copy and acknowledged an offset: a second or so after it connected)."""
    deadline = time.monotonic() + timeout
    while primary.client().wait(1, 100) < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("no replica caught up with the primary")


@pytest.fixture
def primary(settings):
    """The rooms' Redis, without a replica, and sends that wait for one (100 ms at most)."""
    server = RedisServer(appendonly=False).start()
    settings.ROOM_REDIS_URLS = [server.url()]
    settings.REDIS_WAIT_REPLICAS = 1
    settings.REDIS_WAIT_TIMEOUT_MS = 100
    yield server
    server.stop()


@pytest.fixture
def replica_of(settings):
    started: list[RedisServer] = []

    def start(primary: RedisServer) -> RedisServer:
        replica = RedisServer(appendonly=False, replicaof=primary.port).start()
        started.append(replica)
        wait_linked(primary)
        # From now on the replica is expected to confirm: time enough for a busy machine.
        settings.REDIS_WAIT_TIMEOUT_MS = 2000
        return replica

    yield start
    for replica in started:
        replica.stop()


class Layer:
    """What message_send asks of the channel layer, recorded."""

    def __init__(self):
        self.events: list[dict] = []
        self.asked_for_a_script_channel = 0

    def script_broadcast_channel(self, group, url):
        self.asked_for_a_script_channel += 1
        return None

    async def group_send(self, group, event):
        if event["type"] == "room.message":
            self.events.append(event)


@pytest.fixture
def layer(monkeypatch):
    recorder = Layer()
    monkeypatch.setattr(services, "get_channel_layer", lambda: recorder)
    return recorder


def send(room, user, client_id: str, body: str = "hello"):
    return services.message_send(
        room_id=room.pk, room_slug=room.slug, author_id=user.pk, author_username=user.username,
        body=body, client_id=client_id,
    )  # fmt: skip


async def test_without_a_replica_a_send_is_refused_and_not_broadcast_and_its_retry_acks_it_once_one_is_back(
    alice, public_room, primary, replica_of, layer
):
    client_id = str(uuid.uuid4())
    for _ in range(2):  # the first attempt and a retry: neither acked, neither broadcast
        with pytest.raises(buffer.NotReplicated) as refused:
            await send(public_room, alice, client_id)
        assert refused.value.confirmed == 0
        assert layer.events == []
    # Stored on the primary (once), as nothing else: it waits there for a replica.
    stored = await database_sync_to_async(buffer.records_between)(room_id=public_room.pk, after=0, upto=10)
    assert [r["client_id"] for r in stored] == [client_id]

    await asyncio.to_thread(replica_of, primary)
    retried = await send(public_room, alice, client_id)
    assert (retried.seq, retried.created) == (1, False)
    # Confirmed now: the stored record goes out, as the script would have published it.
    assert [(e["seq"], e["room_id"]) for e in layer.events] == [(1, public_room.pk)]
    assert str(client_id) in layer.events[0]["record"]

    fresh = await send(public_room, alice, str(uuid.uuid4()), "again")
    assert (fresh.seq, fresh.created) == (2, True)
    assert [e["seq"] for e in layer.events] == [1, 2]
    # Under WAIT the script never publishes: the layer is not even asked for its channel.
    assert layer.asked_for_a_script_channel == 0


async def test_with_a_replica_the_append_and_its_wait_go_together_in_one_pipeline(
    alice, public_room, primary, replica_of, layer
):
    await asyncio.to_thread(replica_of, primary)
    await database_sync_to_async(room_counters)(room_id=public_room.pk)  # the room's counters, as message_send does

    def append():
        record = {"author": {"id": alice.pk, "username": "alice"}, "body": "x", "client_id": str(uuid.uuid4())}
        # WAIT returns once the replica has the write: 5 s is a bound for a loaded machine
        # (100 ms was missed there), not a delay.
        return buffer.append(room_id=public_room.pk, record=record, wait=buffer.ReplicaWait(1, 5000))

    assert (await append()).created  # the first one loads the script (NOSCRIPT, SCRIPT LOAD, again)

    def calls() -> dict[str, int]:
        stats = primary.client().info("commandstats")
        return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "wait", "script")}

    before = calls()
    result = await append()
    assert result.created and result.replicas == 1
    after = calls()
    # EVALSHA and WAIT, nothing else: no SCRIPT EXISTS first, as redis-py's pipelined
    # script objects would send.
    assert {name: after[name] - before[name] for name in after} == {"evalsha": 1, "wait": 1, "script": 0}


async def test_the_persistence_job_writes_only_what_a_replica_has(alice, public_room, primary, replica_of, layer):
    replica = await asyncio.to_thread(replica_of, primary)
    for body in ("one", "two"):
        assert (await send(public_room, alice, str(uuid.uuid4()), body)).created
    replica.stop()
    await asyncio.sleep(0.1)  # the primary notices the replica is gone
    with pytest.raises(buffer.NotReplicated):
        await database_sync_to_async(messages_persist_room)(room_id=public_room.pk)
    assert await Message.objects.filter(room=public_room).acount() == 0
    await asyncio.to_thread(replica_of, primary)
    assert await database_sync_to_async(messages_persist_room)(room_id=public_room.pk) == 2
    assert [m.seq async for m in Message.objects.filter(room=public_room).order_by("seq")] == [1, 2]


async def test_without_wait_nothing_changes_the_script_publishes(alice, public_room, settings, monkeypatch):
    settings.REDIS_WAIT_REPLICAS = 0
    calls = []
    real = buffer.append

    async def spy(**kwargs):
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(buffer, "append", spy)
    result = await send(public_room, alice, str(uuid.uuid4()))
    assert result.created
    assert calls[-1]["wait"] is None
    assert calls[-1]["broadcast_to"] is not None  # the suite's Redis carries the room's group
