"""The message path on real processes: two web servers (uvicorn), rq workers, Redis, PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from messaging.models import Message
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def rows_of(room) -> list[tuple[int, str]]:
    return list(Message.objects.filter(room=room).order_by("seq").values_list("seq", "client_id"))


def count_rows(room) -> int:
    from django.db import connection

    try:
        return Message.objects.filter(room=room).count()
    finally:
        connection.close()


def test_the_handshake_is_refused_with_403_for_anonymous_users_and_foreign_origins(cluster, bob):
    port = cluster.start_web()
    key = session_key_for(bob)

    async def scenario():
        with pytest.raises(InvalidStatus) as anonymous:
            await NetClient.open(port, None)
        assert anonymous.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as foreign:
            await NetClient.open(port, key, origin="https://evil.example")
        assert foreign.value.response.status_code == 403
        client = await NetClient.open(port, key)
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
        await client.close()

    asyncio.run(scenario())


def test_concurrent_senders_on_two_processes_see_one_order_and_postgresql_gets_every_message(
    cluster, alice, bob, public_room
):
    ports = [cluster.start_web(), cluster.start_web()]
    cluster.start_worker()
    keys = [session_key_for(alice), session_key_for(bob)]
    per_client, clients_count = 20, 6
    total = per_client * clients_count

    async def scenario():
        clients = [await NetClient.open(ports[i % 2], keys[i % 2]) for i in range(clients_count)]
        for client in clients:
            await client.subscribe(public_room.slug)

        async def burst(client):
            for i in range(per_client):
                await client.send_message(public_room.slug, f"from {client.port}: {i}")

        await asyncio.gather(*(burst(c) for c in clients))
        for client in clients:
            await client.collect(lambda c: len(c.of_type("message")) >= total and len(c.of_type("ack")) >= per_client)
        return clients

    clients = asyncio.run(scenario())
    acked = {f["client_id"]: f["seq"] for c in clients for f in c.of_type("ack")}
    assert sorted(acked.values()) == list(range(1, total + 1))
    first = [(m["seq"], m["client_id"]) for m in clients[0].of_type("message")]
    assert [seq for seq, _ in first] == list(range(1, total + 1))
    for client in clients:
        assert [(m["seq"], m["client_id"]) for m in client.of_type("message")] == first
    assert not [f for c in clients for f in c.frames if f["type"] == "error"]

    rows = wait_until(lambda: len(rows_of(public_room)) == total and rows_of(public_room))
    assert [(seq, str(cid)) for seq, cid in rows] == sorted((seq, cid) for cid, seq in acked.items())
    print(
        f"{clients_count} clients on 2 processes: {total} messages acked, delivered to each in order, {len(rows)} rows"
    )


def test_a_worker_killed_mid_burst_loses_nothing(cluster, alice, public_room):
    port = cluster.start_web()
    worker = cluster.start_worker()
    key = session_key_for(alice)
    total = 600

    async def scenario():
        client = await NetClient.open(port, key)
        await client.subscribe(public_room.slug)
        for i in range(total):
            await client.send_message(public_room.slug, f"m{i}")
            if i == total // 3:
                # Kill it once it is at work, so it dies with a batch in hand.
                for _ in range(100):
                    if await asyncio.to_thread(count_rows, public_room):
                        break
                    await asyncio.sleep(0.1)
                cluster.kill_worker(worker)
                persisted_at_kill = await asyncio.to_thread(count_rows, public_room)
        await client.collect(lambda c: len(c.of_type("ack")) >= total)
        await client.close()
        return client, persisted_at_kill

    client, persisted_at_kill = asyncio.run(scenario())
    acked = {f["client_id"]: f["seq"] for f in client.of_type("ack")}
    assert len(acked) == total
    assert 0 < persisted_at_kill < total  # killed while at work, before it could write everything
    cluster.start_worker()
    rows = wait_until(lambda: len(rows_of(public_room)) >= total and rows_of(public_room), timeout=30)
    assert len(rows) == total
    assert {str(cid): seq for seq, cid in rows} == acked
    print(f"worker killed after {total // 3} sends with {persisted_at_kill} rows written; new worker: {len(rows)} rows")
