"""The pub/sub channel layer of channels-redis, made to say when it may have missed events.

channels-redis's ``RedisPubSubChannelLayer`` does one PUBLISH per group send and fans out
inside the process: four times the delivered rate of the core layer in the benchmark
(docs/benchmarks.md). But when its subscriber connection to Redis drops, redis-py
reconnects and subscribes again without telling anyone, and whatever was published in
between is gone: a consumer would sit on a live socket with a hole in its rooms.

Here the subscriber connection's reconnect (redis-py calls ``PubSub.on_connect`` on
every connection after the first) puts a ``layer.reconnected`` event into every channel
of this process's layer. The consumer answers it as it answers a failed layer call under
the core layer: it closes the socket with 1011, and the client resubscribes with
``since`` and gets what it missed from the room's buffer.
"""

from __future__ import annotations

import asyncio
import logging

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisSingleShardConnection
from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)

RECONNECTED = {"type": "layer.reconnected"}


class _ReconnectAwarePubSub(PubSub):
    def __init__(self, *args, shard: _Shard, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shard = shard

    async def on_connect(self, connection) -> None:
        await super().on_connect(connection)  # subscribes again to every channel
        self.shard.reconnected()


class _Shard(RedisSingleShardConnection):
    def _ensure_redis(self) -> None:
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = _ReconnectAwarePubSub(self._redis.connection_pool, shard=self)

    def reconnected(self) -> None:
        layer = self.channel_layer  # the per-loop layer that owns this shard
        notice = layer.channel_layer.serialize(RECONNECTED)
        queues = list(layer.channels.values())
        logger.warning(
            "The channel layer's connection to %s came back; telling %d consumers to resync", self.host, len(queues)
        )
        for queue in queues:
            queue.put_nowait(notice)


class ResyncingPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` whose consumers hear ``layer.reconnected`` after its
    subscriber connection to a Redis server was lost and made again."""

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        fresh = loop not in self._layers
        layer = super()._get_layer()
        if fresh:  # no connection is made before the first subscribe or publish
            layer._shards = [_Shard(shard.host, layer) for shard in layer._shards]
        return layer
