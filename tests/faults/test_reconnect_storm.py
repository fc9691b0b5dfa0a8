"""2,000 clients connecting at once, as after a restart: every one of them had seen a
room up to some `seq` and resubscribes with `since`, while messages keep coming. All get
in (retrying with backoff and jitter, as the browser client does), the web processes stay
up and answer /healthz, and every client ends with every message it missed, once."""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from urllib.request import urlopen

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    ChatClient,
    Ledger,
    base_env,
    chaos_row,
    make_users,
    report,
    room_latest,
    start_webs,
    talk,
    tracebacks,
    verify,
    wait_for_delivery,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes

CLIENTS = 2000
USERS = 40  # 50 tabs each: presence is per user
ROOMS = 4
SEEN = 5  # every client had seen this far before the restart
BEFORE, DURING = 10, 10  # messages per room before the storm and during it


def healthz_ms(port: int) -> float:
    started = time.monotonic()
    with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as response:
        assert response.status == 200
    return (time.monotonic() - started) * 1000


def test_2000_clients_reconnecting_at_once_all_get_in_and_miss_nothing(make_cluster, alice):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # the children inherit it
    cluster = make_cluster(base_env())
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    rooms = [room_create(creator=alice, name=f"Storm {i}") for i in range(ROOMS)]
    slugs = [r.slug for r in rooms]
    keys = [session_key_for(u) for u in make_users(USERS)]
    sender_key = session_key_for(alice)
    ledger = Ledger()

    async def scenario():
        sender = ChatClient("sender", sender_key, lambda: cluster.ports, slugs, first_port=ports[0])
        await sender.start()
        await talk([sender], ledger, slugs, BEFORE * ROOMS)
        clients = [
            ChatClient(
                f"tab{i}",
                keys[i % USERS],
                lambda: cluster.ports,
                [slugs[i % ROOMS]],
                first_port=ports[i % len(ports)],
                backoff=(0.5, 8.0),
                reconnect_for=240,
            )
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.last_seq[client.rooms[0]] = SEEN
        started = time.monotonic()
        joined_at: list[float] = []

        async def join(client):
            await client.start()
            joined_at.append(time.monotonic() - started)

        storm = asyncio.gather(*(join(c) for c in clients))
        probes = []
        during = asyncio.create_task(talk([sender], ledger, slugs, DURING * ROOMS, interval=0.2))
        while not storm.done():
            probes += await asyncio.gather(*(asyncio.to_thread(healthz_ms, p) for p in ports))
            await asyncio.sleep(1.0)
        await storm
        await during
        latest = {r.slug: room_latest(r.pk, base_env()["REDIS_URL"]) for r in rooms}
        delivered = await wait_for_delivery(clients, latest, timeout=60)
        alive = [cluster.webs[p].poll() is None for p in ports]
        for client in [sender, *clients]:
            await client.close()
        return clients, joined_at, probes, delivered, alive, latest

    clients, joined_at, probes, delivered, alive, latest = asyncio.run(scenario())
    rows = wait_for_rows([r.pk for r in rooms], sum(latest.values()))
    verdict = verify(ledger, rows, [], {r.slug: r.pk for r in rooms})
    missing = [c.name for c in clients if c.received[c.rooms[0]] != list(range(SEEN + 1, latest[c.rooms[0]] + 1))]
    failed = sum(c.failed_handshakes for c in clients)
    report(
        f"{CLIENTS} clients reconnecting at once to 2 web processes",
        f"all in after {max(joined_at):.1f} s (median {statistics.median(joined_at):.1f} s); "
        f"{failed} handshakes refused or timed out on the way, retried with backoff",
        f"/healthz during the storm: median {statistics.median(probes):.0f} ms, max {max(probes):.0f} ms; "
        f"web processes alive at the end: {alive}",
        f"{ledger.summary()}; rows in PostgreSQL {len(rows)}; clients missing a message: {len(missing)}; "
        f"each got seq {SEEN + 1}..{max(latest.values())} of its room",
        f"tracebacks in the web logs: {tracebacks(cluster)}",
    )
    chaos_row(
        f"{CLIENTS} clients reconnecting at once",
        acked=verdict.acked,
        stored=verdict.rows,
        delivered=sum(len(c.received[c.rooms[0]]) for c in clients),
        lost=verdict.lost + len(missing),
        duplicated=verdict.duplicated + sum(c.duplicates for c in clients),
        recovery=max(joined_at),
    )
    assert all(alive) and delivered and not missing
    assert not sum(c.duplicates for c in clients)
    assert not verdict.problems, verdict.problems
    assert len(joined_at) == CLIENTS
