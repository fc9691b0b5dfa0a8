"""The pub/sub channel layer we ship tells its consumers when it may have missed events."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

from messaging.realtime.layers import RECONNECTED, FanoutChannelLayer
from pubsub_site.redis.urls import channel_layer_host


async def pubsub_client_ids(client) -> set[int]:
    """The pub/sub connections on this test's Redis database: the server is shared with the
    other leg of `make test`, which runs beside this one on a database of its own."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    return {entry["id"] for entry in await client.client_list(_type="pubsub") if entry["db"] == db}


async def test_a_consumer_hears_layer_reconnected_after_the_subscriber_connection_dropped():
    layer = FanoutChannelLayer(hosts=[settings.REDIS_URL], prefix="test-layers:")
    admin = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        before = await pubsub_client_ids(admin)
        channel = await layer.new_channel()
        await layer.group_add("room.1", channel)
        await layer.group_send("room.1", {"type": "room.message", "n": 1})
        assert await asyncio.wait_for(layer.receive(channel), 2) == {"type": "room.message", "n": 1}

        ours = await pubsub_client_ids(admin) - before
        assert ours, "the layer's subscriber connection was not found"
        for client_id in ours:
            await admin.client_kill_filter(_id=client_id)

        # redis-py reconnects and subscribes again; the layer says events may be lost.
        assert await asyncio.wait_for(layer.receive(channel), 5) == RECONNECTED
        # And the subscription works again.
        await layer.group_send("room.1", {"type": "room.message", "n": 2})
        assert await asyncio.wait_for(layer.receive(channel), 2) == {"type": "room.message", "n": 2}
    finally:
        await layer.flush()
        await admin.aclose()


async def test_nothing_is_said_while_the_connection_holds():
    layer = FanoutChannelLayer(hosts=[settings.REDIS_URL], prefix="test-layers:")
    try:
        channel = await layer.new_channel()
        await layer.group_add("room.2", channel)
        for n in range(3):
            await layer.group_send("room.2", {"type": "room.message", "n": n})
        got = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(3)]
        assert got == [{"type": "room.message", "n": n} for n in range(3)]
        try:
            extra = await asyncio.wait_for(layer.receive(channel), 0.5)
        except TimeoutError:
            extra = None
        assert extra is None
    finally:
        await layer.flush()


async def subscribers(client, name: str) -> int:
    return dict(await client.pubsub_numsub(name)).get(name.encode(), 0)


async def test_a_group_left_by_its_last_member_stays_subscribed_a_while_then_is_dropped(monkeypatch):
    monkeypatch.setattr("messaging.realtime.layers.UNSUBSCRIBE_AFTER_SECONDS", 0.4)
    layer = FanoutChannelLayer(hosts=[settings.REDIS_URL], prefix="test-layers-linger:")
    admin = aioredis.Redis.from_url(settings.REDIS_URL)
    name = "test-layers-linger:__group__activity.3"
    try:
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("activity.3", first)
        assert await subscribers(admin, name) == 1
        await layer.group_discard("activity.3", first)
        # Nobody here is in the group: its events are dropped, the subscription stays.
        await layer.group_send("activity.3", {"type": "room.activity", "n": 1})
        await asyncio.sleep(0.2)  # heard and dropped by the layer's reader
        assert await subscribers(admin, name) == 1
        # A member back within the linger needs no SUBSCRIBE and hears the group again.
        await layer.group_add("activity.3", second)
        await layer.group_send("activity.3", {"type": "room.activity", "n": 2})
        assert await asyncio.wait_for(layer.receive(second), 2) == {"type": "room.activity", "n": 2}
        assert layer.channels[first].empty()
        await asyncio.sleep(0.6)
        assert await subscribers(admin, name) == 1  # it has a member: still subscribed
        # Left for good: unsubscribed once the linger is over.
        await layer.group_discard("activity.3", second)
        for _ in range(40):
            if await subscribers(admin, name) == 0:
                break
            await asyncio.sleep(0.05)
        assert await subscribers(admin, name) == 0
        assert not layer.idle_groups
    finally:
        await layer.flush()
        await admin.aclose()


async def test_group_add_all_subscribes_only_to_groups_new_to_the_process(monkeypatch):
    from messaging.realtime.layers import _Shard

    layer = FanoutChannelLayer(hosts=[settings.REDIS_URL], prefix="test-layers-all:")
    subscribed: list[str] = []
    real = _Shard.subscribe

    async def counting(self, channel):
        subscribed.append(channel.removeprefix("test-layers-all:__group__"))
        await real(self, channel)

    monkeypatch.setattr(_Shard, "subscribe", counting)
    try:
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.group_add_all(["user.1", "activity.1", "activity.2"], first)
        await layer.group_add_all(["user.2", "activity.1", "activity.2"], second)
        assert subscribed == ["user.1", "activity.1", "activity.2", "user.2"]
        await layer.group_send("activity.2", {"type": "room.activity", "n": 1})
        for channel in (first, second):
            assert await asyncio.wait_for(layer.receive(channel), 2) == {"type": "room.activity", "n": 1}

        await layer.group_discard_all(["user.1", "activity.1", "activity.2"], first)
        await layer.group_send("activity.2", {"type": "room.activity", "n": 2})
        await layer.group_send("user.1", {"type": "user.notify", "n": 3})
        assert await asyncio.wait_for(layer.receive(second), 2) == {"type": "room.activity", "n": 2}
        await asyncio.sleep(0.2)  # what the first socket would hear has arrived by now
        assert layer.channels[first].empty()
        assert "test-layers-all:__group__user.1" in layer._get_layer().idle_groups  # left by its last member
    finally:
        await layer.flush()


def test_a_script_may_publish_a_group_s_events_only_on_the_group_s_server_in_plain_msgpack():
    layer = FanoutChannelLayer(hosts=["redis://127.0.0.1:6379/3"], prefix="p:")
    name = "p:__group__room.7"
    # Pub/sub belongs to the server: another database of it is the same place.
    assert layer.script_broadcast_channel("room.7", "redis://127.0.0.1:6379/9") == name
    assert layer.script_broadcast_channel("room.7", "redis://127.0.0.1:6380/3") is None
    assert layer.script_broadcast_channel("room.7", "redis://10.0.0.2:6379/3") is None
    two = FanoutChannelLayer(hosts=["redis://127.0.0.1:6379/0", "redis://127.0.0.1:6380/0"], prefix="p:")
    on = {
        url: two.script_broadcast_channel("room.7", url) for url in ("redis://127.0.0.1:6379", "redis://127.0.0.1:6380")
    }
    assert sorted(on.values(), key=lambda v: v is None) == [name, None]  # exactly the group's shard
    # Encrypted events cannot be made by a script.
    sealed = FanoutChannelLayer(hosts=["redis://127.0.0.1:6379/3"], prefix="p:", symmetric_encryption_keys=["a" * 32])
    assert sealed.script_broadcast_channel("room.7", "redis://127.0.0.1:6379/3") is None


def test_with_sentinel_a_script_may_publish_when_the_room_and_the_group_are_one_sentinel_service():
    service = "redis+sentinel://10.0.1.5:26379,10.0.2.5:26379,10.0.3.5:26379/pubsub"
    layer = FanoutChannelLayer(hosts=[channel_layer_host(f"{service}/3")], prefix="p:")
    name = "p:__group__room.7"
    # The same Sentinels and master name are the same server, whichever is the primary now
    # (in any order, any database: pub/sub belongs to the server).
    assert layer.script_broadcast_channel("room.7", f"{service}/9") == name
    reordered = "redis+sentinel://10.0.3.5:26379,10.0.1.5:26379,10.0.2.5:26379/pubsub/0"
    assert layer.script_broadcast_channel("room.7", reordered) == name
    # Another master, other Sentinels, or a plain URL: the event goes through group_send.
    assert layer.script_broadcast_channel("room.7", "redis+sentinel://10.0.1.5:26379,10.0.2.5:26379/other/0") is None
    assert layer.script_broadcast_channel("room.7", "redis+sentinel://10.9.9.9:26379/pubsub/0") is None
    assert layer.script_broadcast_channel("room.7", "redis://10.0.1.5:6379/0") is None
    plain = FanoutChannelLayer(hosts=["redis://10.0.1.5:6379/0"], prefix="p:")
    assert plain.script_broadcast_channel("room.7", f"{service}/0") is None
