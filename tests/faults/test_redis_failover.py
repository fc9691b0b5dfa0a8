"""Issue 14: a Redis machine dies. A primary, its replica and three Sentinels
(down-after-milliseconds 2000, quorum 2) of the test's own; every Redis the site uses (rooms,
channel layer, rq, cache, rate limits) is the Sentinel service (``redis+sentinel://``), and an
ack waits for the replica (REDIS_WAIT_REPLICAS=1). Clients send at a steady rate in three
rooms over two web processes, with a worker writing PostgreSQL.

- The primary is SIGKILLed: the Sentinels promote the replica, every process follows it, and
  the count at the end finds every acked message in PostgreSQL once, with seqs 1..N per room,
  received by every client in that order.
- The replica is stopped: sends are answered `unavailable` (never acked, never broadcast)
  until it is back; then their retries are acked, and nothing is lost.
- The channel layer's subscriber connection follows a failover to the new primary and
  subscribes there again (redis-py's SentinelConnectionPool), and its consumers hear
  ``layer.reconnected``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
import redis

from messaging.realtime.layers import RECONNECTED, FanoutChannelLayer
from pubsub_site.redis.urls import channel_layer_host
from rooms.services import room_create
from tests.faults.kit import (
    ChatClient,
    Ledger,
    RedisServer,
    Sentinels,
    client_stats,
    make_users,
    open_clients,
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

REDIS_START = Path(__file__).resolve().parents[2] / "deploy" / "redis-ha" / "redis-start.sh"

# An ack waits for one replica, 500 ms at most; the worker's sweep comes back every 2 s
# for a job that failed while no replica confirmed its batch.
WAIT_ENV = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "500", "PERSIST_SWEEP_SECONDS": "2"}
ROOMS = 3
CLIENTS = 6
SEND_INTERVAL = 0.05  # each client: the next message 50 ms after the last one settled


def timed(function, *args, **kwargs):
    """``function``'s result and when it returned (time.monotonic(), in its own thread: the
    event loop, busy with the clients, may take a while to resume the awaiting coroutine)."""
    result = function(*args, **kwargs)
    return result, time.monotonic()


def start_env(sentinels: Sentinels, server: RedisServer) -> dict[str, str]:
    """deploy/redis-ha/redis-start.sh's settings for ``server`` (all on 127.0.0.1)."""
    return {
        "REDIS_SENTINELS": " ".join(f"127.0.0.1:{port}" for port in sentinels.ports),
        "REDIS_MASTER_NAME": sentinels.name,
        "REDIS_PORT": str(server.port),
        "REDIS_SELF": "127.0.0.1",
        "REDIS_SERVER": "redis-server",
    }


def start_ha(make_redis, make_sentinels) -> tuple[RedisServer, RedisServer, Sentinels]:
    primary = make_redis(appendonly=True, appendfsync="everysec")
    replica = make_redis(appendonly=True, appendfsync="everysec", replicaof=primary.port)
    sentinels = make_sentinels(primary.port, count=3, quorum=2, down_after_ms=2000, failover_timeout_ms=4000)
    return primary, replica, sentinels


def site(make_cluster, alice, sentinels: Sentinels):
    """Two web processes and a worker on the Sentinel service, three rooms, six users."""
    cluster = make_cluster(redis_env(sentinels.url(), **WAIT_ENV))
    ports = start_webs(cluster, 2)
    cluster.start_worker()
    rooms = [room_create(creator=alice, name=f"Failover {i}") for i in range(ROOMS)]
    users = make_users(CLIENTS)
    specs = [(u.username, session_key_for(u), ports[i % 2]) for i, u in enumerate(users)]
    return cluster, rooms, specs


async def steady(clients: list[ChatClient], ledger: Ledger, rooms: list[str], stop: asyncio.Event) -> None:
    """Each client sends, over the rooms in turn, until ``stop``; a send is retried (same
    client_id) until it is acked, as the browser does."""

    async def one(index: int, client: ChatClient) -> None:
        i = 0
        while not stop.is_set():
            send = ledger.new(rooms[(index + i) % len(rooms)], f"{client.name} #{i}")
            await client.send_until_settled(send, give_up_after=60)
            i += 1
            await asyncio.sleep(SEND_INTERVAL)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))


async def acked_at_least(ledger: Ledger, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(ledger.of("acked")) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} acks within {timeout} s: {ledger.summary()}")
        await asyncio.sleep(0.01)


async def acked_after(ledger: Ledger, moment: float, timeout: float = 30) -> float:
    """When the first send was acked after ``moment`` (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while True:
        times = [s.acked_at for s in ledger.sends.values() if s.acked_at is not None and s.acked_at > moment]
        if times:
            return min(times)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no send acked within {timeout} s: {ledger.summary()}")
        await asyncio.sleep(0.02)


def longest_ack_gap(ledger: Ledger) -> float:
    """The longest time without an ack: how long senders saw nothing succeed."""
    times = sorted(s.acked_at for s in ledger.sends.values() if s.acked_at is not None)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_the_primary_sigkilled_its_replica_is_promoted_and_every_acked_message_survives(
    make_cluster, make_redis, make_sentinels, alice
):
    primary, replica, sentinels = start_ha(make_redis, make_sentinels)
    cluster, rooms, specs = site(make_cluster, alice, sentinels)
    slugs = [room.slug for room in rooms]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, slugs)
        stop = asyncio.Event()
        traffic = asyncio.create_task(steady(clients, ledger, slugs, stop))
        await acked_at_least(ledger, 120)
        primary.kill()  # SIGKILL: the machine is gone, as far as anyone can tell
        killed_at = time.monotonic()
        acked_at_kill = len(ledger.of("acked"))
        new_port, promoted = await asyncio.to_thread(timed, sentinels.wait_for_promotion, primary.port)
        promoted_after = promoted - killed_at
        # The dead machine's Redis comes back through deploy/redis-ha/redis-start.sh, which
        # asks the Sentinels who the primary is now and starts as its replica; until a
        # replica confirms them, sends are answered `unavailable`.
        _, rejoined = await asyncio.to_thread(
            timed, primary.start, via=["sh", str(REDIS_START)], env=start_env(sentinels, primary)
        )
        rejoined_after = rejoined - killed_at
        replication = primary.client().info("replication")
        assert (replication["role"], replication["master_port"]) == ("slave", new_port)
        resumed_after = await acked_after(ledger, killed_at + promoted_after) - killed_at
        await asyncio.sleep(3)  # sending goes on on the new primary
        stop.set()
        await traffic
        new_primary = f"redis://127.0.0.1:{new_port}/0"
        latest = {room.slug: room_latest(room.pk, new_primary) for room in rooms}
        delivered = await wait_for_delivery(clients, latest)
        for client in clients:
            await client.close()
        return clients, new_port, acked_at_kill, promoted_after, rejoined_after, resumed_after, latest, delivered

    clients, new_port, acked_at_kill, promoted_after, rejoined_after, resumed_after, latest, delivered = asyncio.run(
        scenario()
    )
    rows = wait_for_rows([room.pk for room in rooms], sum(latest.values()))
    verdict = verify(ledger, rows, clients, {room.slug: room.pk for room in rooms})
    gap = longest_ack_gap(ledger)
    resyncs = sum(c.close_codes[1011] for c in clients)
    report(
        "the rooms' Redis primary SIGKILLed; Sentinels promote its replica (WAIT 1)",
        f"killed after {acked_at_kill} acks; promoted after {promoted_after:.1f} s; the old primary back as a "
        f"replica after {rejoined_after:.1f} s; the first ack of a send after {resumed_after:.1f} s; longest time "
        f"without an ack {gap:.1f} s",
        f"{ledger.summary()}",
        verdict.line(),
        f"seqs per room in PostgreSQL: {dict(sorted((r.slug, latest[r.slug]) for r in rooms))}; sockets closed "
        f"with 1011 (told to resync) {resyncs}",
        client_stats(clients),
    )
    verdict_row("the Redis primary SIGKILLed, a replica promoted by Sentinel (WAIT 1)", verdict, gap)
    assert new_port == replica.port
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)  # every send was retried until acked
    assert gap < 10, f"sends failed for {gap:.1f} s"
    assert all(p.poll() is None for p in [*cluster.webs.values(), *cluster.workers])


def test_with_the_replica_stopped_sends_are_unavailable_not_acked_until_it_is_back(
    make_cluster, make_redis, make_sentinels, alice
):
    primary, replica, sentinels = start_ha(make_redis, make_sentinels)
    cluster, rooms, specs = site(make_cluster, alice, sentinels)
    slugs = [room.slug for room in rooms]
    ledger = Ledger()

    async def scenario():
        clients = await open_clients(specs, lambda: cluster.ports, slugs)
        stop = asyncio.Event()
        traffic = asyncio.create_task(steady(clients, ledger, slugs, stop))
        await acked_at_least(ledger, 60)
        replica.kill()
        stopped_at = time.monotonic()
        refused_before = ledger.attempt_counts()["refused:unavailable"]
        await asyncio.sleep(4)
        # What went out and what the primary holds, before the replica is back.
        seen = {slug: max(c.last_seq[slug] for c in clients) for slug in slugs}
        stored = {room.slug: room_latest(room.pk, primary.url()) for room in rooms}
        refused_during = ledger.attempt_counts()["refused:unavailable"] - refused_before
        # An ack's WAIT that was answered before the kill may reach its client just after it.
        acked_during = [s for s in ledger.sends.values() if s.acked_at is not None and s.acked_at > stopped_at + 0.2]
        restarted_at = time.monotonic()
        _, started = await asyncio.to_thread(timed, replica.start)  # its AOF, then a copy from the primary
        resumed_after = await acked_after(ledger, restarted_at) - restarted_at
        await asyncio.sleep(2)
        stop.set()
        await traffic
        latest = {room.slug: room_latest(room.pk, primary.url()) for room in rooms}
        delivered = await wait_for_delivery(clients, latest)
        for client in clients:
            await client.close()
        restart = started - restarted_at
        return clients, seen, stored, refused_during, acked_during, restart, resumed_after, latest, delivered

    clients, seen, stored, refused_during, acked_during, restart, resumed_after, latest, delivered = asyncio.run(
        scenario()
    )
    rows = wait_for_rows([room.pk for room in rooms], sum(latest.values()))
    verdict = verify(ledger, rows, clients, {room.slug: room.pk for room in rooms})
    waiting = sum(stored[s] - seen[s] for s in slugs)
    report(
        "the replica stopped for 4 s (WAIT 1): sends unavailable until it is back",
        f"during the outage: {refused_during} attempts answered unavailable, {len(acked_during)} acked; "
        f"{waiting} messages stored on the primary and not broadcast (primary's seqs {stored}, clients' {seen}); "
        f"the replica started again in {restart:.1f} s, the first ack {resumed_after:.1f} s after its start",
        f"{ledger.summary()}",
        verdict.line(),
        client_stats(clients),
    )
    verdict_row("the Redis replica stopped for 4 s: sends `unavailable`, none acked (WAIT 1)", verdict, resumed_after)
    assert acked_during == [], [(s.client_id, s.seq) for s in acked_during]
    assert refused_during > 0
    # Stored on the primary, not confirmed: nobody saw them before the replica was back.
    assert waiting > 0 and all(stored[s] >= seen[s] for s in slugs)
    assert delivered and not verdict.problems, verdict.problems
    assert verdict.acked == len(ledger.sends)
    assert all(p.poll() is None for p in [*cluster.webs.values(), *cluster.workers])


def test_the_channel_layer_follows_a_failover_to_the_new_primary_and_tells_its_consumers(make_redis, make_sentinels):
    primary, replica, sentinels = start_ha(make_redis, make_sentinels)

    async def scenario():
        layer = FanoutChannelLayer(hosts=[channel_layer_host(sentinels.url())], prefix="failover-layer:")
        try:
            channel = await layer.new_channel()
            await layer.group_add("lobby", channel)
            await layer.group_send("lobby", {"type": "chat.note", "n": 1})
            assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

            primary.kill()
            new_port = await asyncio.to_thread(sentinels.wait_for_promotion, primary.port)
            # The subscriber connection came back, to the promoted replica: the consumer is told.
            assert await asyncio.wait_for(layer.receive(channel), 15) == RECONNECTED
            # ...and it is subscribed there: what is published on the new primary arrives.
            name = layer._get_layer()._get_group_channel_name("lobby")
            assert redis.Redis(port=new_port).pubsub_numsub(name) == [(name.encode(), 1)]
            await layer.group_send("lobby", {"type": "chat.note", "n": 2})
            assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 2
            return new_port
        finally:
            await layer.flush()

    assert asyncio.run(scenario()) == replica.port
