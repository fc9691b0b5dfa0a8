"""Claps and presence across real web processes."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from django.contrib.auth import get_user_model

from messaging.models import CLAP_CAP, Clap
from tests.conftest import wait_until
from tests.netclient import NetClient, session_key_for

pytestmark = pytest.mark.processes


def test_twenty_clients_on_two_processes_clap_one_message_to_exact_capped_totals(cluster, alice, public_room):
    ports = [cluster.start_web(), cluster.start_web()]
    cluster.start_worker()
    users = [get_user_model().objects.create_user(f"clapper{i}", password="x-long-password") for i in range(20)]
    keys = [session_key_for(u) for u in users]
    alice_key = session_key_for(alice)
    rng = random.Random(7)
    plans = [[rng.randint(1, 12) for _ in range(rng.randint(3, 9))] for _ in users]  # some pass the cap
    expected = {u.pk: min(CLAP_CAP, sum(plan)) for u, plan in zip(users, plans, strict=True)}

    async def scenario():
        author = await NetClient.open(ports[0], alice_key)
        await author.subscribe(public_room.slug)
        await author.send_message(public_room.slug, "clap here")
        await author.recv_type("ack")
        clients = [await NetClient.open(ports[i % 2], keys[i]) for i in range(len(users))]
        for client in clients:
            await client.subscribe(public_room.slug)

        async def clap(client, plan):
            for count in plan:
                await client.send({"type": "clap", "room": public_room.slug, "seq": 1, "count": count})
                await asyncio.sleep(rng.random() / 50)

        await asyncio.gather(*(clap(c, p) for c, p in zip(clients, plans, strict=True)))
        await asyncio.sleep(1.0)  # let the coalesced broadcasts land
        for client in [author, *clients]:
            try:
                while True:
                    await client.recv(timeout=0.3)
            except TimeoutError:
                pass
        return author, clients

    author, clients = asyncio.run(scenario())
    total = sum(expected.values())
    for client in [author, *clients]:
        last = client.of_type("claps")[-1]
        assert last["total"] == total, (client.port, last)
    for client, user in zip(clients, users, strict=True):
        mine = [f for f in client.of_type("claps") if f["user"] and f["user"]["id"] == user.pk and "ref" not in f]
        assert max(f["user_total"] for f in mine) == expected[user.pk]
    rows = wait_until(
        lambda: (
            (r := dict(Clap.objects.filter(message__room=public_room).values_list("user_id", "count"))) == expected
            and r
        )
    )
    assert sum(rows.values()) == total
    print(f"20 clappers on 2 processes: total {total}, capped per user at {CLAP_CAP}; PostgreSQL agrees")


def test_presence_survives_tabs_and_a_killed_process_makes_its_users_leave(cluster, alice, bob, public_room):
    cluster.env.update({"PRESENCE_TTL": "3", "PRESENCE_HEARTBEAT": "1", "PRESENCE_COALESCE_SECONDS": "0.2"})
    stable, doomed = cluster.start_web(), cluster.start_web()
    alice_key, bob_key = session_key_for(alice), session_key_for(bob)

    async def scenario():
        watcher = await NetClient.open(stable, alice_key)
        await watcher.subscribe(public_room.slug)
        presence = await watcher.recv_type("presence")
        assert [u["username"] for u in presence["online"]] == ["alice"]
        bob_tab = await NetClient.open(doomed, bob_key)
        await bob_tab.subscribe(public_room.slug)
        joined = await watcher.recv_type("presence_diff")
        assert [u["username"] for u in joined["joins"]] == ["bob"]
        killed_at = time.monotonic()
        cluster.kill_web(doomed)
        left = await watcher.recv_type("presence_diff", timeout=15)
        assert [u["username"] for u in left["leaves"]] == ["bob"]
        elapsed = time.monotonic() - killed_at
        await watcher.close()
        return elapsed

    elapsed = asyncio.run(scenario())
    # The bound is PRESENCE_TTL + PRESENCE_HEARTBEAT + PRESENCE_COALESCE_SECONDS (3 + 1 + 0.2 here;
    # 45 + 15 + 1 = 61 s in production), and a second for a busy machine.
    assert elapsed <= 3 + 1 + 0.2 + 1
    print(f"bob left {elapsed:.1f} s after his web process was killed (bound: 4.2 s with TTL 3 s, heartbeat 1 s)")
