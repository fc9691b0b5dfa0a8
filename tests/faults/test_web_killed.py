"""A web process killed with SIGKILL under load: its clients reconnect to another process,
resubscribe with `since` and miss nothing; sends it never answered stay unknown (they are
not retried here), and each of them is stored once or not at all."""

from __future__ import annotations

import asyncio

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    longest_outage,
    make_users,
    open_clients,
    report,
    room_latest,
    start_webs,
    talk,
    verdict_row,
    verify,
    wait_for_delivery,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes


def test_a_web_process_killed_under_load_loses_no_acked_message(make_cluster, alice):
    cluster = make_cluster(base_env())
    ports = start_webs(cluster, 3)
    cluster.start_worker()
    rooms = [room_create(creator=alice, name=f"Busy {i}") for i in range(2)]
    slugs = [r.slug for r in rooms]
    users = make_users(12)
    specs = [(u.username, session_key_for(u), ports[i % 3]) for i, u in enumerate(users)]
    ledger = Ledger()
    doomed = ports[0]

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, slugs)
        traffic = asyncio.create_task(
            # No retry of an unanswered send: it stays "unknown" in the count.
            talk(clients, ledger, slugs, 30, interval=0.01, retry=("refused:unavailable", "unsent"))
        )
        while len(ledger.of("acked")) < 120:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(cluster.kill_web, doomed)
        acked_at_kill = len(ledger.of("acked"))
        await traffic
        latest = {r.slug: room_latest(r.pk, base_env()["REDIS_URL"]) for r in rooms}
        delivered = await wait_for_delivery(clients, latest)
        for client in clients:
            await client.close()
        return clients, acked_at_kill, delivered, latest

    clients, acked_at_kill, delivered, latest = asyncio.run(scenario())
    rows = wait_for_rows([r.pk for r in rooms], sum(latest.values()))
    verdict = verify(ledger, rows, clients, {r.slug: r.pk for r in rooms})
    report(
        "web process SIGKILLed under load (3 web, 12 clients, 2 rooms)",
        f"killed after {acked_at_kill} acks; {ledger.summary()}",
        verdict.line(),
        client_stats(clients),
    )
    verdict_row("a web process SIGKILLed under load (3 web)", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert sum(c.reconnects for c in clients) >= 4  # the killed process's clients moved
