"""PostgreSQL unreachable for 10 s, through a TCP proxy in front of port 5432 that every
process connects through: sending and delivery go on (the per-message path touches Redis
only), /readyz answers 503 naming PostgreSQL meanwhile, and once it is back persistence
catches up by itself, with no further send to trigger it."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from rooms.services import room_create
from tests.conftest import database_url
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    make_users,
    open_clients,
    pg_rows,
    report,
    room_latest,
    start_webs,
    talk,
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


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read())


def test_sending_and_delivery_go_on_while_postgresql_is_unreachable_and_persistence_catches_up(
    make_cluster, make_proxy, alice
):
    proxy = make_proxy(5432)
    env = base_env(DATABASE_URL=database_url().replace(":5432/", f":{proxy.port}/"), PERSIST_SWEEP_SECONDS="5")
    cluster = make_cluster(env)
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    wait_for_workers(env["REDIS_URL"], 1)
    room = room_create(creator=alice, name="No database")
    users = make_users(6)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])
        await talk(clients, ledger, [room.slug], 5)
        before = len(ledger.sends)
        proxy.cut()
        cut_at = time.monotonic()
        probes = []
        while time.monotonic() - cut_at < OUTAGE:
            # No retries: during the outage every send must be acked at the first try.
            await talk(clients, ledger, [room.slug], 1, retry=())
            probes += await asyncio.gather(*(asyncio.to_thread(readyz, p) for p in ports))
            await asyncio.sleep(0.3)
        latest_during = room_latest(room.pk, env["REDIS_URL"])
        delivered_during = await wait_for_delivery(clients, {room.slug: latest_during}, timeout=5)
        rows_during = len(pg_rows([room.pk]))
        proxy.restore()
        restored_at = time.monotonic()
        for client in clients:
            await client.close()
        return clients, before, probes, delivered_during, rows_during, latest_during, restored_at

    clients, before, probes, delivered_during, rows_during, latest, restored_at = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], latest, timeout=40)
    caught_up = time.monotonic() - restored_at
    after = [readyz(p) for p in ports]
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    during = list(ledger.sends.values())[before:]
    report(
        "PostgreSQL unreachable for 10 s",
        f"during the outage: {len(during)} sends, {sum(s.final == 'acked' for s in during)} acked at the first "
        f"try, every client received all {latest} (live: {delivered_during}); rows in PostgreSQL then {rows_during}",
        f"/readyz during: {sorted({(s, tuple(b.get('failed', []))) for s, b in probes})}; after: "
        f"{sorted({s for s, _ in after})}",
        f"no send after the restore; {len(rows)} rows in PostgreSQL {caught_up:.1f} s after it "
        "(the worker's sweep runs every 5 s here, 10 s by default)",
        verdict.line(),
        client_stats(clients),
        f"tracebacks in the web logs: {tracebacks(cluster)}",
    )
    verdict_row("PostgreSQL unreachable for 10 s", verdict, caught_up)
    assert all(s.attempts == ["acked"] for s in during), ledger.summary()
    assert delivered_during
    assert {(s, tuple(b["failed"])) for s, b in probes} == {(503, ("postgresql",))}
    assert {s for s, _ in after} == {200}
    assert not verdict.problems, verdict.problems
    assert verdict.rows == verdict.acked == len(ledger.sends)
