"""The channel layer under a socket: its connection to Redis drops.

The layer's Redis unreachable for 3 s (a TCP proxy in front of it; the rooms' Redis stays
up): the consumers close their sockets (1011) instead of silently missing events, the
clients resubscribe with `since` once it is back and miss nothing, and a send whose
broadcast failed is still acked, since the message is stored.
"""

from __future__ import annotations

import asyncio

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    log_text,
    longest_outage,
    make_users,
    open_clients,
    report,
    room_latest,
    start_webs,
    suite_redis_port,
    suite_redis_url,
    talk,
    through_proxy,
    tracebacks,
    verdict_row,
    verify,
    wait_for_delivery,
    wait_for_rows,
    wait_for_workers,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

DIRECT = suite_redis_url()


def test_a_consumer_whose_layer_connection_drops_closes_its_socket_and_nothing_is_missed(
    make_cluster, make_proxy, alice
):
    proxy = make_proxy(suite_redis_port())
    cluster = make_cluster(base_env(CHANNEL_REDIS_URLS=through_proxy(proxy.port)))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    wait_for_workers(DIRECT, 1)
    room = room_create(creator=alice, name="Layer drop")
    users = make_users(6)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])
        traffic = asyncio.create_task(talk(clients, ledger, [room.slug], 40, interval=0.02))
        while len(ledger.of("acked")) < 60:
            await asyncio.sleep(0.01)
        proxy.cut()
        acked_at_cut = len(ledger.of("acked"))
        await asyncio.sleep(3)
        proxy.restore()
        await traffic
        latest = room_latest(room.pk, DIRECT)
        delivered = await wait_for_delivery(clients, {room.slug: latest})
        for client in clients:
            await client.close()
        return clients, acked_at_cut, latest, delivered

    clients, acked_at_cut, latest, delivered = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], latest)
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    report(
        "the channel layer's Redis unreachable for 3 s (rooms' Redis up)",
        f"cut after {acked_at_cut} acks; {ledger.summary()}",
        verdict.line(),
        client_stats(clients),
        f"sends stored while the broadcast failed (acked): {log_text(cluster).count('stored but not broadcast')}; "
        f"tracebacks in the web logs: {tracebacks(cluster)}",
    )
    verdict_row("the channel layer's Redis link cut for 3 s", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)
    assert all(c.reconnects for c in clients)  # every socket was closed, none left deaf
    assert "refused:unavailable" not in ledger.attempt_counts()  # stored means acked
