"""The channel layer: channels-redis's pub/sub layer, with a room's fan-out done once per process.

channels-redis's ``RedisPubSubChannelLayer`` keeps one Redis subscription per group per
process and does one PUBLISH per group send. As shipped it then puts a copy of every
event into the queue of every consumer in the group, and each consumer decodes it, wakes
up, orders it and writes it: the work of a message is done once per socket. Here a
room's messages (``room.message`` events on a ``room.<id>`` group) go instead, decoded
once, to the room's ``messaging.fanout.RoomFanout``, which orders them once and writes the
same text to every socket of the process. The process's fan-out is its one member of the
group, as far as Redis is concerned. Every other event goes to the consumers as before.
A consumer's own channel lives in its process only (nothing here sends to a channel by
name), so opening a socket subscribes to nothing in Redis but its groups.

Its second change: when the subscriber connection to Redis drops, redis-py reconnects and
subscribes again without telling anyone, and whatever was published in between is gone.
Here the reconnect (redis-py calls ``PubSub.on_connect`` on every connection after the
first) puts a ``layer.reconnected`` event into every channel of this process; the consumer
closes its socket with 1011 and the client resubscribes with ``since``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from redis.asyncio.client import PubSub

from messaging.fanout import RoomFanout

logger = logging.getLogger(__name__)

RECONNECTED = {"type": "layer.reconnected"}
ROOM_MESSAGE = "room.message"


class _ReconnectAwarePubSub(PubSub):
    def __init__(self, *args, shard: _Shard, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shard = shard

    async def on_connect(self, connection) -> None:
        await super().on_connect(connection)  # subscribes again to every channel
        self.shard.reconnected()


class _Shard(RedisSingleShardConnection):
    channel_layer: FanoutLoopLayer

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

    async def publish(self, channel: str, message: bytes) -> None:
        # Without the shard's lock, which channels-redis holds here too: the pool gives each
        # PUBLISH a connection of its own, and under the lock every send of the process
        # waited for the round trips of the others and for the handshakes' SUBSCRIBEs.
        self._ensure_redis()
        await self._redis.publish(channel, message)

    def _receive_message(self, message) -> None:
        if message is not None:
            name = message["channel"]
            fanout = self.channel_layer.fanouts.get(name.decode() if isinstance(name, bytes) else name)
            if fanout is not None:
                event = self.channel_layer.channel_layer.deserialize(message["data"])
                if event.get("type") == ROOM_MESSAGE:
                    fanout.offer(event)
                    return
        super()._receive_message(message)


class FanoutLoopLayer(RedisPubSubLoopLayer):
    """The layer of one event loop: its consumers' channels and groups, and its rooms' fan-outs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]
        self.fanouts: dict[str, RoomFanout] = {}  # group channel name -> the room's fan-out

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel, known to this process only. The site reaches consumers
        through groups, never by channel name, so the channel is not subscribed to in Redis:
        a SUBSCRIBE and an UNSUBSCRIBE per socket saved, each a round trip under the shard's
        lock that every handshake of the process queued behind."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = asyncio.Queue()
        return channel

    async def send(self, channel: str, message: dict) -> None:
        """Only to a channel of this process (see ``new_channel``)."""
        queue = self.channels.get(channel)
        if queue is not None:
            queue.put_nowait(self.channel_layer.serialize(message))

    def room_fanout(self, group: str, *, room_id: int, slug: str) -> RoomFanout:
        """The room's fan-out in this process, made on first use. A socket attaches to it
        before its consumer joins the group, so no event of the group slips past it."""
        name = self._get_group_channel_name(group)
        fanout = self.fanouts.get(name)
        if fanout is None:
            fanout = self.fanouts[name] = RoomFanout(room_id, slug)
        return fanout

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        name = self._get_group_channel_name(group)
        if name not in self.groups:
            self._drop_fanout(name)

    def _drop_fanout(self, name: str) -> None:
        fanout = self.fanouts.get(name)
        if fanout is not None and not fanout.feeds:
            del self.fanouts[name]
            fanout.close()

    async def flush(self) -> None:
        for fanout in self.fanouts.values():
            fanout.close()
        self.fanouts = {}
        await super().flush()


class FanoutChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` with one fan-out per room and process, whose consumers
    hear ``layer.reconnected`` after its subscriber connection to a Redis server came back."""

    def _get_layer(self) -> FanoutLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = FanoutLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
