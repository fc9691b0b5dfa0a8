# ruff: noqa: F811 (the fixtures imported below are parameters of the tests)
"""Issue 6, scale-out: the production shape on one machine (three web processes, two
workers), Redis restarted under it with its append-only file, and room state spread over
two Redis servers. Every test ends with the count: acked messages against rows in
PostgreSQL against what each client received."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time

import pytest
from channels_redis.utils import _consistent_hash

from protocol.events import room_group
from rooms.services import room_create
from tests.conftest import wait_until
from tests.faults.fixtures import make_cluster, make_redis  # noqa: F401 (fixtures)
from tests.faults.kit import (
    Ledger,
    base_env,
    client_stats,
    longest_outage,
    make_users,
    open_clients,
    pg_rows,
    redis_env,
    report,
    room_latest,
    start_webs,
    verdict_row,
    verify,
    wait_for_delivery,
    wait_for_rows,
)
from tests.netclient import session_key_for

pytestmark = pytest.mark.processes


def test_three_web_processes_two_workers_and_a_killed_web_process_lose_nothing(make_cluster, alice):
    cluster = make_cluster(base_env())
    ports = start_webs(cluster, 3)
    cluster.start_worker()
    cluster.start_worker()
    room = room_create(creator=alice, name="Scale out")
    users = make_users(9)
    specs = [(u.username, session_key_for(u), ports[i % 3]) for i, u in enumerate(users)]
    ledger = Ledger()
    doomed = ports[0]

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])

        # Every client sends one message; each reaches all nine.
        sends = [ledger.new(room.slug, f"hello from {c.name}") for c in clients]
        await asyncio.gather(*(c.send_until_settled(s) for c, s in zip(clients, sends, strict=True)))
        assert await wait_for_delivery(clients, {room.slug: len(clients)})
        on_doomed = [c for c in clients if c.port == doomed]

        cluster.kill_web(doomed)  # SIGKILL: no goodbye, no close frame
        killed_at = time.monotonic()

        async def talk(client):
            for i in range(5):
                await client.send_until_settled(ledger.new(room.slug, f"{client.name} after the kill: {i}"))

        await asyncio.gather(*(talk(c) for c in clients))
        latest = room_latest(room.pk, base_env()["REDIS_URL"])
        delivered = await wait_for_delivery(clients, {room.slug: latest})
        moved = [(c.name, c.ports_used) for c in on_doomed]
        for client in clients:
            await client.close()
        return clients, delivered, moved, time.monotonic() - killed_at

    clients, delivered, moved, elapsed = asyncio.run(scenario())
    rows = wait_for_rows([room.pk], len(ledger.of("acked")))
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    report(
        "scale-out: 3 web, 2 workers, one web SIGKILLed",
        verdict.line(),
        client_stats(clients),
        f"clients of the killed process moved to: {moved}; all delivered {elapsed:.1f} s after the kill",
    )
    verdict_row("make cluster (3 web, 2 workers), a web process SIGKILLed", verdict, longest_outage(clients))
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends) == 9 * 6
    assert all(len(ports_used) == 2 and ports_used[1] != doomed for _, ports_used in moved)


@pytest.mark.parametrize("restart", ["shutdown", "sigkill"])
def test_every_acked_message_reaches_postgresql_across_a_redis_restart_with_aof(
    make_cluster, make_redis, alice, restart
):
    """The worker is frozen (SIGSTOP) while messages are acked, so when Redis goes down
    they exist only there; it is thawed after the restart and must persist them all, and
    everything sent after, without being restarted itself."""
    server = make_redis(appendonly=True, appendfsync="everysec")
    cluster = make_cluster(redis_env(server.url()))
    ports = start_webs(cluster, 2)
    worker = cluster.start_worker()
    room = room_create(creator=alice, name="Durable")
    users = make_users(4)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    ledger = Ledger()
    per_phase = 25
    wait_until(lambda: server.client().exists("rq:workers"), timeout=30)

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, [room.slug])

        async def talk(client, phase):
            for i in range(per_phase):
                await client.send_until_settled(ledger.new(room.slug, f"{client.name} {phase} {i}"))

        worker.send_signal(signal.SIGSTOP)
        await asyncio.gather(*(talk(c, "before") for c in clients))
        acked_before = len(ledger.of("acked"))
        rows_before = len(pg_rows([room.pk]))
        await asyncio.to_thread(server.restart, restart)
        worker.send_signal(signal.SIGCONT)
        await asyncio.gather(*(talk(c, "after") for c in clients))
        latest = room_latest(room.pk, server.url())
        delivered = await wait_for_delivery(clients, {room.slug: latest})
        for client in clients:
            await client.close()
        return clients, acked_before, rows_before, delivered

    clients, acked_before, rows_before, delivered = asyncio.run(scenario())
    started = time.monotonic()
    rows = wait_for_rows([room.pk], len(ledger.of("acked")))
    caught_up = time.monotonic() - started
    verdict = verify(ledger, rows, clients, {room.slug: room.pk})
    report(
        f"Redis restarted ({restart}) with appendonly yes, appendfsync everysec",
        f"{acked_before} acked before the restart with the worker frozen, {rows_before} of them in PostgreSQL then",
        verdict.line(),
        client_stats(clients),
        f"the same worker, thawed, had every row {caught_up:.1f} s after the last send",
    )
    verdict_row(f"Redis restarted ({restart}) from its AOF, worker frozen", verdict, caught_up)
    assert rows_before == 0
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)
    assert worker.poll() is None


def room_named_by(key: str) -> int | None:
    """The room a Redis key belongs to: ``pubsub:room:{42}:...`` (a hash tag) or a rate-limit
    counter ``pubsub:ratelimit:ws:LIMITER/<action>/<room>/<user>/...``."""
    if match := re.search(r"\{(\d+)\}", key) or re.search(r"LIMITER/\w+/(\d+)/", key):
        return int(match[1])
    return None


def rooms_over_both(alice, count: int, prefix: str) -> list:
    """``count`` new rooms whose ids are both even and odd (two room servers) and whose
    groups land on both of two channel-layer hosts. channels-redis places a group by a CRC
    of its channel name, and CRC is linear: names that differ by an id alone go together
    more often than chance would (for about one set of consecutive ids in seven, every group
    of this test was on one host, whatever the prefix). So rooms are made until ``count``
    of them cover both; the others stay unused."""
    made = []
    for i in range(60):
        made.append(room_create(creator=alice, name=f"Spread {i}"))
        for rooms in itertools.combinations(made, min(count, len(made))):
            hosts = {_consistent_hash(f"{prefix}__group__{room_group(r.pk)}", 2) for r in rooms}
            if len(rooms) == count and {r.pk % 2 for r in rooms} == {0, 1} and hosts == {0, 1}:
                return list(rooms)
    raise AssertionError("60 rooms and no four of them over both servers and both layer hosts")


def test_rooms_spread_over_two_redis_servers_and_the_channel_layer_over_both(make_cluster, make_redis, alice):
    """Each room's keys live on the server ``room id % 2`` names; the worker persists both
    servers (``persist_messages(server)``); channels-redis shards its channels and groups
    over both hosts."""
    servers = [make_redis(appendonly=False), make_redis(appendonly=False)]
    urls = [s.url() for s in servers]
    spread = ",".join(urls)
    # Rate-limit windows of an hour, so that their keys are still there to be counted.
    limits = {"WS_RATE_LIMIT_SEND": "100000/hour", "WS_RATE_LIMIT_CLAP": "100000/hour"}
    cluster = make_cluster(base_env(REDIS_URL=urls[0], ROOM_REDIS_URLS=spread, CHANNEL_REDIS_URLS=spread, **limits))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    rooms = rooms_over_both(alice, 4, prefix="pubsub:layer:0:")  # the layer's prefix for database 0
    users = make_users(4)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    slugs = [r.slug for r in rooms]
    ledger = Ledger()
    per_room = 10

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, slugs)

        async def talk(client):
            for i in range(per_room):
                for slug in slugs:
                    await client.send_until_settled(ledger.new(slug, f"{client.name} in {slug}: {i}"))

        await asyncio.gather(*(talk(c) for c in clients))
        latest = {r.slug: room_latest(r.pk, urls[r.pk % 2]) for r in rooms}
        delivered = await wait_for_delivery(clients, latest)
        # The groups (rooms, users, activity) while everyone is still subscribed.
        # Core layer: a sorted set per group; pub/sub layer: a subscribed channel per group.
        layer_groups = [
            len(list(s.client().scan_iter(match="pubsub:layer:*group*", count=1000)))
            + len(s.client().pubsub_channels("pubsub:layer:*group*"))
            for s in servers
        ]
        for client in clients:
            await client.close()
        return clients, delivered, latest, layer_groups

    clients, delivered, latest, layer_groups = asyncio.run(scenario())
    rows = wait_for_rows([r.pk for r in rooms], len(ledger.sends))
    verdict = verify(ledger, rows, clients, {r.slug: r.pk for r in rooms})

    # One room, one server: every key that names a room is on that room's server.
    misplaced, found = [], {0: 0, 1: 0}
    for index, server in enumerate(servers):
        for key in server.client().scan_iter(match="*", count=1000):
            room_id = room_named_by(key.decode())
            if room_id is not None:
                found[index] += 1
                if room_id % 2 != index:
                    misplaced.append((index, key.decode()))
    rate_limit_keys = [k for s in servers for k in s.client().scan_iter(match="*ratelimit*", count=1000)]
    persisted = [int(s.client().get(f"pubsub:room:{{{r.pk}}}:persisted") or 0) for r in rooms for s in servers]
    report(
        "two Redis servers for rooms and for the channel layer",
        verdict.line(),
        f"room keys per server {found}, misplaced {len(misplaced)}; rate-limit keys {len(rate_limit_keys)}; "
        f"channel-layer groups per server {layer_groups}",
        f"latest seq per room {latest}",
    )
    verdict_row("rooms and channel layer over two Redis servers", verdict)
    assert delivered and not verdict.problems, verdict.problems
    assert not misplaced, misplaced
    assert found[0] and found[1] and rate_limit_keys
    assert all(count > 0 for count in layer_groups), layer_groups  # both hosts carry layer traffic
    assert sum(persisted) == len(ledger.sends)  # each room's watermark on its own server only
    wait_until(lambda: not any(s.client().scard("pubsub:dirty") for s in servers))
    assert verdict.acked == len(ledger.sends) == 4 * per_room * len(rooms)
