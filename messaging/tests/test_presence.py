"""Presence in a room that fills up: coalesced diffs, a capped list with the count of all."""

import asyncio

import pytest

from messaging.tests.wsclient import connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

NOT_PRESENCE = frozenset({"unread", "typing", "clap_board"})


@pytest.fixture
def crowd(make_user):
    return [make_user(f"fan{i}") for i in range(5)]


async def test_people_joining_within_the_interval_reach_the_room_as_one_presence_diff(alice, crowd, public_room):
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    assert (await watch.recv_type("presence"))["count"] == 1
    fans = []
    for user in crowd:
        fan = await connected(user)
        await fan.subscribe(public_room.slug)
        fans.append(fan)
    diff = await watch.recv_type("presence_diff")
    assert sorted(u["username"] for u in diff["joins"]) == [f"fan{i}" for i in range(5)]
    assert diff["leaves"] == [] and diff["count"] == 6
    assert await watch.nothing_more(1.5)  # one frame for five joins
    for fan in fans:
        await fan.close()
    await watch.close()


async def test_the_list_names_at_most_presence_list_max_people_and_counts_them_all(
    alice, bob, crowd, public_room, settings
):
    settings.PRESENCE_LIST_MAX = 3
    fans = []
    for user in crowd:
        fan = await connected(user)
        await fan.subscribe(public_room.slug)
        fans.append(fan)
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    presence = await watch.recv_type("presence")
    assert presence["count"] == 6
    assert [u["username"] for u in presence["online"]] == ["alice", "fan0", "fan1"]  # by name
    for fan in fans:
        await fan.close()
    await watch.close()


async def test_someone_who_came_and_went_within_the_interval_is_announced_as_gone(alice, bob, public_room):
    watch = await connected(alice, ignore=NOT_PRESENCE)
    await watch.subscribe(public_room.slug)
    await watch.recv_type("presence")
    visitor = await connected(bob)
    await visitor.subscribe(public_room.slug)
    await visitor.close()
    diff = await watch.recv_type("presence_diff")
    assert diff["joins"] == []
    assert [u["username"] for u in diff["leaves"]] == ["bob"] and diff["count"] == 1
    await watch.close()


async def test_the_process_keeps_its_entries_alive_in_one_beat_and_sweeps_each_room_once(alice, bob, public_room):
    from messaging import presence
    from messaging.buffer import RoomKeys
    from pubsub_site.redis_client import get_async_redis

    redis = get_async_redis(public_room.pk)
    key = RoomKeys(public_room.pk).presence
    ours = [presence.member_key(user_id=alice.pk, username="alice", spectator=False, channel=f"c{i}") for i in (1, 2)]
    dead = presence.member_key(user_id=bob.pk, username="bob", spectator=False, channel="of-a-dead-process")
    for member in ours:
        await presence.join(room_id=public_room.pk, member=member)
    await redis.zadd(key, {dead: presence._now() - 1})  # expired: its process stopped refreshing it
    before = {m: await redis.zscore(key, m) for m in ours}
    gone_calls = []

    async def on_gone(room_id, users):
        gone_calls.append((room_id, users))

    keeper = presence.PresenceKeeper(on_gone)
    for member in ours:
        keeper.entries.setdefault(public_room.pk, set()).add(member)
    await asyncio.sleep(0.01)
    await keeper.beat()

    after = {m: await redis.zscore(key, m) for m in ours}
    assert all(after[m] > before[m] for m in ours)  # pushed back
    assert await redis.zscore(key, dead) is None
    assert gone_calls == [(public_room.pk, [{"id": bob.pk, "username": "bob", "spectator": False}])]
    keeper.discard(public_room.pk, ours[0])
    keeper.discard(public_room.pk, ours[1])
    assert keeper.entries == {}
