"""The pub/sub channel layer we ship tells its consumers when it may have missed events."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from django.conf import settings

from messaging.layers import RECONNECTED, FanoutChannelLayer


async def pubsub_client_ids(client) -> set[int]:
    return {entry["id"] for entry in await client.client_list(_type="pubsub")}


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
