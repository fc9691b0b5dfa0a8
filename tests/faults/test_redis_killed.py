"""Redis killed with SIGKILL under traffic and restarted from its append-only file
(`appendfsync everysec`): every acked message survives and reaches PostgreSQL once. Also
measures what `appendfsync always` costs against `everysec`, through the real send path
and with redis-benchmark, for docs/faults.md."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import pytest

from rooms.services import room_create
from tests.faults.kit import (
    Ledger,
    blast,
    client_stats,
    longest_outage,
    make_users,
    open_clients,
    redis_env,
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


def test_redis_killed_and_restarted_from_its_aof_keeps_every_acked_message(make_cluster, make_redis, alice):
    server = make_redis(appendonly=True, appendfsync="everysec")
    cluster = make_cluster(redis_env(server.url()))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    room = room_create(creator=alice, name="Crash")
    users = make_users(8)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])
        traffic = asyncio.create_task(talk(clients, ledger, [room.slug], 30, interval=0.01))
        while len(ledger.of("acked")) < 80:
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL: the OS keeps what Redis wrote to the AOF; nothing is fsynced here
        acked_at_kill = len(ledger.of("acked"))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        await traffic
        latest = room_latest(room.pk, server.url())
        delivered = await wait_for_delivery(clients, {room.slug: latest})
        for client in clients:
            await client.close()
        return clients, acked_at_kill, delivered, latest

    clients, acked_at_kill, delivered, latest = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], latest)
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    report(
        "Redis SIGKILLed under traffic, restarted from its AOF (everysec) after 1 s",
        f"killed after {acked_at_kill} acks; {ledger.summary()}",
        verdict.line(),
        client_stats(clients),
    )
    verdict_row("Redis SIGKILLed, restarted from its AOF (everysec)", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)  # every send was retried until acked
    assert cluster.workers[0].poll() is None


def benchmark_sets(port: int) -> float:
    output = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set", "-n", "20000", "-c", "20", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return float(re.search(r"SET: ([\d.]+) requests per second", output.replace("\r", "\n")).group(1))


def test_appendfsync_always_against_everysec(make_cluster, make_redis, alice):
    users = make_users(4)
    room = room_create(creator=alice, name="Fsync")
    figures = {}
    for policy in ("everysec", "always"):
        server = make_redis(appendonly=True, appendfsync=policy)
        cluster = make_cluster(redis_env(server.url()))
        port = start_webs(cluster, 1)[0]
        specs = [(u.username, session_key_for(u), port) for u in users]
        ledger = Ledger()

        async def measure():
            clients = await open_clients(specs, lambda: cluster.ports, [room.slug])  # noqa: B023
            started = time.monotonic()
            await blast(clients, ledger, room.slug, 150, window=20)  # noqa: B023
            elapsed = time.monotonic() - started
            for client in clients:
                await client.close()
            return elapsed

        elapsed = asyncio.run(measure())
        assert len(ledger.of("acked")) == len(ledger.sends)
        figures[policy] = (len(ledger.sends) / elapsed, benchmark_sets(server.port))
        cluster.stop()
        server.stop()
    report(
        "appendfsync always against everysec",
        *(
            f"{policy}: {path:.0f} sends/s through the real path (1 web process, 4 clients, 600 sends), "
            f"redis-benchmark SET {bench:.0f}/s (20 clients)"
            for policy, (path, bench) in figures.items()
        ),
    )
