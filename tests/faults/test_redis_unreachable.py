"""Redis unreachable for 10 s, through a TCP proxy the test cuts and restores.

- Only the rooms' Redis (and the job queue) cut, the channel layer up: sockets stay open,
  every send answers `unavailable`, and none of those is stored, even partly. Once Redis
  is back, the clients retry with the same client_id and each message is stored once.
- One Redis for everything (the default deployment) cut: sockets close (1011) as the
  channel layer fails, handshakes fail until it is back; then the clients reconnect,
  resubscribe with `since`, retry what was refused or unanswered, and each message is
  stored exactly once and delivered to everyone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    longest_outage,
    make_users,
    open_clients,
    redis_env,
    report,
    room_latest,
    start_webs,
    stored_anywhere,
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

OUTAGE = 10.0
DIRECT = suite_redis_url()


def test_sends_answer_unavailable_while_the_rooms_redis_is_unreachable_and_nothing_is_half_stored(
    make_cluster, make_proxy, alice
):
    proxy = make_proxy(suite_redis_port())
    through = through_proxy(proxy.port)
    cluster = make_cluster(base_env(REDIS_URL=through, ROOM_REDIS_URLS=through, CHANNEL_REDIS_URLS=DIRECT))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    wait_for_workers(DIRECT, 1)
    room = room_create(creator=alice, name="Cut rooms")
    users = make_users(6)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])
        await talk(clients, ledger, [room.slug], 5)
        proxy.cut()
        cut_at = time.monotonic()
        # During the outage: send, and do not retry; every answer must be `unavailable`.
        during = Ledger()
        while time.monotonic() - cut_at < OUTAGE:
            await talk(clients, during, [room.slug], 1, retry=())
            await asyncio.sleep(0.5)
        refused = [s.client_id for s in during.of("refused")]
        half_stored = stored_anywhere(refused, room.pk, DIRECT)
        proxy.restore()
        # Back: every refused send is retried with its client_id.
        await asyncio.gather(
            *(clients[i % len(clients)].send_until_settled(s) for i, s in enumerate(during.sends.values()))
        )
        ledger.sends.update(during.sends)
        await talk(clients, ledger, [room.slug], 5)
        latest = room_latest(room.pk, DIRECT)
        delivered = await wait_for_delivery(clients, {room.slug: latest})
        for client in clients:
            await client.close()
        return clients, during, half_stored, latest, delivered

    clients, during, half_stored, latest, delivered = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], latest)
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    first = during.first_outcomes()
    report(
        "rooms' Redis unreachable for 10 s (channel layer up)",
        f"during the outage: {len(during.sends)} sends, first answers {dict(first)}; "
        f"{len(half_stored)} of the refused found in Redis or PostgreSQL",
        f"after: all retried with the same client_id; {ledger.summary()}",
        verdict.line(),
        client_stats(clients),
        f"tracebacks in the web logs: {tracebacks(cluster)}",
    )
    verdict_row("the rooms' Redis unreachable for 10 s", verdict, longest_outage(clients))
    assert set(first) == {"refused:unavailable"}, first
    assert not half_stored
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)


def test_one_redis_for_everything_unreachable_for_10_s_loses_and_doubles_nothing(make_cluster, make_proxy, alice):
    proxy = make_proxy(suite_redis_port())
    cluster = make_cluster(redis_env(through_proxy(proxy.port)))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    wait_for_workers(DIRECT, 1)
    room = room_create(creator=alice, name="Cut all")
    users = make_users(6)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug], reconnect_for=60)
        traffic = asyncio.create_task(talk(clients, ledger, [room.slug], 40, interval=0.05, give_up_after=90))
        while len(ledger.of("acked")) < 60:
            await asyncio.sleep(0.01)
        proxy.cut()
        acked_at_cut = len(ledger.of("acked"))
        await asyncio.sleep(OUTAGE)
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
        "one Redis for everything unreachable for 10 s",
        f"cut after {acked_at_cut} acks; {ledger.summary()}",
        verdict.line(),
        client_stats(clients),
        f"tracebacks in the web logs: {tracebacks(cluster)}",
    )
    verdict_row("one Redis for everything unreachable for 10 s", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)
