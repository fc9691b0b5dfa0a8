"""The Python client (clients/python) against a live site: web processes and a worker started
here, an API token made in the test database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pubsub_client import ApiError, Client, Subscription, SubscriptionEnded

from api.services import token_create, token_revoke
from messaging.models import Message
from rooms.models import Membership
from tests.conftest import wait_until

pytestmark = pytest.mark.processes

PUBSUB = str(Path(sys.executable).parent / "pubsub")


@pytest.fixture
def site(cluster):
    port = cluster.start_web()
    cluster.start_worker()
    return f"http://127.0.0.1:{port}"


def test_it_publishes_and_a_retry_with_the_same_key_gets_the_same_seq(site, alice, public_room):
    with Client(site, token_create(user=alice, name="ci").secret) as client:
        first = client.publish(public_room.slug, "hello")
        second = client.publish(public_room.slug, "hello again", idempotency_key="retry-me")
        retry = client.publish(public_room.slug, "hello again", idempotency_key="retry-me")
        reply = client.publish(public_room.slug, "a reply", reply_to=first["seq"])
    assert (first["seq"], second["seq"], retry["seq"], reply["seq"]) == (1, 2, 2, 3)
    assert first["author"]["username"] == "alice" and first["body"] == "hello"
    assert reply["reply_to"] == 1
    wait_until(lambda: Message.objects.filter(room=public_room).count() == 3)


def test_a_batch_says_which_messages_failed(site, alice, public_room, private_room, charlie):
    Membership.objects.create(room=public_room, user=charlie)
    with Client(site, token_create(user=charlie, name="ci").secret) as client:
        results = client.publish_batch(
            [
                {"room": public_room.slug, "body": "one"},
                {"room": private_room.slug, "body": "not mine"},
                {"room": public_room.slug, "body": "two"},
            ]
        )
    assert [r["status"] for r in results] == [201, 404, 201]
    assert [results[0]["message"]["seq"], results[2]["message"]["seq"]] == [1, 2]
    assert results[1]["error"]["code"] == "not_found"


def test_it_reads_history_by_seq_and_lists_rooms(site, alice, public_room, private_room):
    with Client(site, token_create(user=alice, name="ci").secret) as client:
        for n in range(1, 8):
            client.publish(public_room.slug, f"m{n}")
        assert [m["seq"] for m in client.history(public_room.slug, after=2, limit=3)["messages"]] == [3, 4, 5]
        page = client.history(public_room.slug, before=4, limit=2)
        assert [m["seq"] for m in page["messages"]] == [2, 3] and page["has_more"]
        assert [m["seq"] for m in client.history(public_room.slug, limit=2)["messages"]] == [6, 7]
        assert [m["seq"] for m in client.history_after(public_room.slug, 0)] == list(range(1, 8))
        slugs = {r["slug"]: r for r in client.rooms()}
    assert {public_room.slug, private_room.slug} <= set(slugs)
    assert slugs[public_room.slug]["seq"] == 7


def test_errors_carry_the_apis_status_and_code(site, alice, private_room, charlie):
    made = token_create(user=charlie, name="ci")
    with Client(site, made.secret, retries=0) as client:
        with pytest.raises(ApiError) as refused:
            client.publish(private_room.slug, "let me in")
        assert (refused.value.status, refused.value.code) == (404, "not_found")
        token_revoke(token=made.obj)
        with pytest.raises(ApiError) as revoked:
            client.rooms()
        assert revoked.value.status == 401


def test_a_subscriber_gets_live_messages_and_is_refused_a_room_it_cannot_read(
    site, alice, public_room, private_room, charlie
):
    alice_client = Client(site, token_create(user=alice, name="ci").secret)
    charlie_client = Client(site, token_create(user=charlie, name="ci").secret)

    async def scenario():
        subscription = alice_client.subscribe(public_room.slug)
        received = []

        async def read():
            async for frame in subscription:
                received.append(frame)
                if len(received) == 3:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(1)  # subscribed
        for n in range(3):
            await asyncio.to_thread(charlie_client.publish, public_room.slug, f"live {n}")
        await asyncio.wait_for(reader, 10)
        with pytest.raises(SubscriptionEnded) as ended:
            async for _ in charlie_client.subscribe(private_room.slug):
                pass
        return received, ended.value.code

    received, code = asyncio.run(scenario())
    assert [(f["seq"], f["body"], f["author"]["username"]) for f in received] == [
        (1, "live 0", "charlie"),
        (2, "live 1", "charlie"),
        (3, "live 2", "charlie"),
    ]
    assert code == "not_found"


def test_a_subscriber_reconnects_after_its_web_process_dies_with_no_gap_and_no_duplicate(cluster, alice, public_room):
    """The subscriber's web process is killed and started again while another keeps taking
    publishes: the subscriber reconnects, resubscribes with since, and sees 1..N once each."""
    doomed, steady = cluster.start_web(), cluster.start_web()
    cluster.start_worker()
    token = token_create(user=alice, name="ci").secret
    publisher = Client(f"http://127.0.0.1:{steady}", token)
    subscriber_client = Client(f"http://127.0.0.1:{doomed}", token)
    total = 60
    published: list[int] = []

    def publish_all():
        for n in range(1, total + 1):
            published.append(publisher.publish(public_room.slug, f"n{n}")["seq"])
            time.sleep(0.03)

    async def scenario():
        subscription = Subscription(subscriber_client, public_room.slug, since=0, backoff=0.2, backoff_max=1)
        seen = []

        async def read():
            async for frame in subscription:
                seen.append(frame["seq"])
                if len(seen) == total:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(1)
        writer = threading.Thread(target=publish_all)
        writer.start()
        while len(seen) < 15:
            await asyncio.sleep(0.02)
        await asyncio.to_thread(cluster.kill_web, doomed)
        await asyncio.sleep(0.5)  # publishes go on while it is down
        await asyncio.to_thread(cluster.start_web, doomed)
        await asyncio.wait_for(reader, 60)
        await asyncio.to_thread(writer.join)
        await subscription.close()
        return seen, subscription.reconnects

    seen, reconnects = asyncio.run(scenario())
    assert published == list(range(1, total + 1))
    assert seen == list(range(1, total + 1))  # every message, once, in order
    assert reconnects >= 1
    print(f"{total} messages; the subscriber's web process killed and restarted; {reconnects} reconnect(s), none lost")


def test_when_the_server_cannot_replay_the_subscriber_reads_the_missed_messages_over_http(cluster, alice, public_room):
    cluster.env["CHANGE_REPLAY_LIMIT"] = "3"  # a client 3 revs behind is told recovered: false
    port = cluster.start_web()
    cluster.start_worker()
    client = Client(f"http://127.0.0.1:{port}", token_create(user=alice, name="ci").secret)
    for n in range(1, 11):
        client.publish(public_room.slug, f"n{n}")

    async def scenario():
        subscription = Subscription(client, public_room.slug, since=2, rev=2)
        seen = []
        async for frame in subscription:
            seen.append(frame["seq"])
            if len(seen) == 8:  # the missed ones, read over HTTP; then a live one
                await asyncio.to_thread(client.publish, public_room.slug, "n11")
            if len(seen) == 9:
                break
        await subscription.close()
        return seen, subscription.http_recoveries

    seen, http_recoveries = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert seen == list(range(3, 12))
    assert http_recoveries == 1


def test_the_command_line_publishes_and_tails(site, alice, public_room):
    env = {**os.environ, "PUBSUB_URL": site, "PUBSUB_TOKEN": token_create(user=alice, name="cli").secret}
    tail = subprocess.Popen(
        [PUBSUB, "tail", public_room.slug, "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(2)  # subscribed
        published = subprocess.run(
            [PUBSUB, "publish", public_room.slug, "from the shell"], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(published.stdout)["seq"] == 1
        subprocess.run([PUBSUB, "publish", public_room.slug, "again"], env=env, check=True, capture_output=True)
        lines = [json.loads(tail.stdout.readline()) for _ in range(2)]
    finally:
        tail.terminate()
        tail.wait(timeout=10)
    assert [(f["seq"], f["body"]) for f in lines] == [(1, "from the shell"), (2, "again")]
    history = subprocess.run([PUBSUB, "history", public_room.slug], env=env, capture_output=True, text=True, check=True)
    assert history.stdout.splitlines() == ["#1 alice: from the shell", "#2 alice: again"]
    missing = subprocess.run([PUBSUB, "rooms"], env={**env, "PUBSUB_TOKEN": ""}, capture_output=True, text=True)
    assert missing.returncode == 2 and "PUBSUB_TOKEN" in missing.stderr


def test_with_changes_a_subscriber_also_gets_edits_deletions_and_claps(site, alice, bob, public_room):
    Membership.objects.create(room=public_room, user=bob)
    alice_client = Client(site, token_create(user=alice, name="ci").secret)
    bob_client = Client(site, token_create(user=bob, name="ci").secret)

    async def scenario():
        subscription = alice_client.subscribe(public_room.slug, since=0, changes=True)
        frames = []

        async def read():
            async for frame in subscription:
                frames.append(frame)
                if len(frames) == 5:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(1)
        await asyncio.to_thread(alice_client.publish, public_room.slug, "first")
        await asyncio.to_thread(alice_client.publish, public_room.slug, "second")
        await asyncio.to_thread(alice_client.edit, public_room.slug, 1, "first, edited")
        await asyncio.to_thread(bob_client.clap, public_room.slug, 1, 3)
        await asyncio.to_thread(alice_client.delete, public_room.slug, 2)
        await asyncio.wait_for(reader, 15)
        await subscription.close()
        return frames, subscription.last_rev

    frames, last_rev = asyncio.run(scenario())
    assert [(f["type"], f["seq"]) for f in frames[:2]] == [("message", 1), ("message", 2)]
    # The changes come as they are broadcast (claps are coalesced, so they may come last).
    changes = {f["type"]: f for f in frames[2:]}
    assert set(changes) == {"message_updated", "claps", "message_deleted"}
    assert (changes["message_updated"]["seq"], changes["message_updated"]["body"]) == (1, "first, edited")
    assert (changes["claps"]["seq"], changes["claps"]["total"]) == (1, 3)
    assert changes["message_deleted"]["seq"] == 2
    assert last_rev == max(f["rev"] for f in frames)
