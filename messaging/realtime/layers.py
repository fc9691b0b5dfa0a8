"""The channel layer: channels-redis's pub/sub layer, with a room's fan-out done once per process.

channels-redis's ``RedisPubSubChannelLayer`` keeps one Redis subscription per group per
process and does one PUBLISH per group send. As shipped it then puts a copy of every
event into the queue of every consumer in the group, and each consumer decodes it, wakes
up, orders it and writes it: the work of a message is done once per socket. Here a
room's messages (``room.message`` events on a ``room.<id>`` group) go instead, decoded
once, to the room's ``messaging.realtime.fanout.RoomFanout``, which orders them once and writes the
same text to every socket of the process. The process's fan-out is its one member of the
group, as far as Redis is concerned. Every other event goes to the consumers as before.
A consumer's own channel lives in its process only (nothing here sends to a channel by
name), so opening a socket subscribes to nothing in Redis but its groups. An event for a
group is decoded once for all the process's consumers in it, which share it (read-only),
and goes into each consumer's inbox: by default a queue that ``receive`` reads; a consumer
may give the layer its own (``deliver_to``), the ASGI server's queue of the socket's
frames, so that one loop reads both and a socket keeps no queue or task of its own.

Its second change: when the subscriber connection to Redis drops, redis-py reconnects and
subscribes again without telling anyone, and whatever was published in between is gone.
Here the reconnect (redis-py calls ``PubSub.on_connect`` on every connection after the
first) puts a ``layer.reconnected`` event into every channel of this process; the consumer
closes its socket with 1011 and the client resubscribes with ``since``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol
from urllib.parse import urlsplit

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.serializers import MsgPackSerializer
from channels_redis.utils import _consistent_hash, _wrap_close, decode_hosts
from redis.asyncio.client import PubSub

from messaging import metrics
from messaging.realtime.fanout import RoomFanout
from protocol import events
from pubsub_site.redis.urls import RedisUrlError, parse_redis_url, redact

logger = logging.getLogger(__name__)

RECONNECTED = events.LAYER_RECONNECTED
# How long the process stays subscribed to a group after its last local member left.
UNSUBSCRIBE_AFTER_SECONDS = 10.0


class Inbox(Protocol):
    def put_nowait(self, event: dict) -> None: ...


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
        metrics.LAYER_RECONNECTS.inc()
        layer = self.channel_layer  # the per-loop layer that owns this shard
        inboxes = list(layer.channels.values())
        logger.warning(
            "The channel layer's connection to %s came back; telling %d consumers to resync",
            _describe(self.host),
            len(inboxes),
        )
        for inbox in inboxes:
            inbox.put_nowait(RECONNECTED)

    async def publish(self, channel: str, message: bytes) -> None:
        # Without the shard's lock, which channels-redis holds here too: the pool gives each
        # PUBLISH a connection of its own, and under the lock every send of the process
        # waited for the round trips of the others and for the handshakes' SUBSCRIBEs.
        self._ensure_redis()
        await self._redis.publish(channel, message)

    async def _do_receiving(self) -> None:
        """channels-redis's receive loop, reading without a timeout while subscribed: it
        reads with a 0.1 s one, a timer made and cancelled for every event the process
        hears. The read ends with the next event, the confirmation of an (un)subscribe,
        or a broken connection (redis-py reconnects and subscribes again, ``on_connect``);
        it is cancelled when the layer is flushed."""
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception:
                logger.exception("Unexpected exception in the channel layer's receive task")
                await asyncio.sleep(1)

    def _receive_message(self, message) -> None:
        if message is None:
            return
        layer = self.channel_layer
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        members = layer.groups.get(name)
        fanout = layer.fanouts.get(name)
        if not members and fanout is None:
            return  # a group this process has just left
        event = layer.channel_layer.deserialize(message["data"])  # once, whoever hears it
        if fanout is not None and event.get("type") == ROOM_MESSAGE:
            fanout.offer(event)
            return
        for channel in members or ():
            inbox = layer.channels.get(channel)
            if inbox is not None:
                inbox.put_nowait(event)


class FanoutLoopLayer(RedisPubSubLoopLayer):
    """The layer of one event loop: its consumers' channels and groups, and its rooms' fan-outs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]
        self.fanouts: dict[str, RoomFanout] = {}  # group channel name -> the room's fan-out
        self.idle_groups: dict[str, float] = {}  # group channel name -> when its last member left
        self.unsubscriber: asyncio.Task | None = None

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel, known to this process only. The site reaches consumers
        through groups, never by channel name, so the channel is not subscribed to in Redis:
        a SUBSCRIBE and an UNSUBSCRIBE per socket saved, each a round trip under the shard's
        lock that every handshake of the process queued behind."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        self.channels[channel] = asyncio.Queue()
        return channel

    def deliver_to(self, channel: str, inbox: Inbox) -> None:
        """From now on the channel's events go into ``inbox`` (anything with ``put_nowait``),
        after whatever its queue held; ``receive`` no longer serves the channel. The owner
        calls ``drop_channel`` when it is done."""
        queue = self.channels.get(channel)
        self.channels[channel] = inbox
        while queue is not None and not queue.empty():
            inbox.put_nowait(queue.get_nowait())

    def drop_channel(self, channel: str) -> None:
        self.channels.pop(channel, None)

    async def receive(self, channel: str) -> dict:
        """The next event of a channel of this process (decoded already, shared: read-only)."""
        queue = self.channels.get(channel)
        if not isinstance(queue, asyncio.Queue):
            raise RuntimeError(f"{channel!r} is not a channel of this process that receive() serves")
        try:
            return await queue.get()
        except (asyncio.CancelledError, GeneratorExit):
            self.drop_channel(channel)  # its consumer is gone: Channels cancels the receive
            raise

    async def send(self, channel: str, message: dict) -> None:
        """Only to a channel of this process (see ``new_channel``)."""
        inbox = self.channels.get(channel)
        if inbox is not None:
            inbox.put_nowait(message)

    def room_fanout(self, group: str, *, room_id: int, slug: str) -> RoomFanout:
        """The room's fan-out in this process, made on first use. A socket attaches to it
        before its consumer joins the group, so no event of the group slips past it."""
        name = self._get_group_channel_name(group)
        fanout = self.fanouts.get(name)
        if fanout is None:
            fanout = self.fanouts[name] = RoomFanout(room_id, slug)
        return fanout

    async def group_add(self, group: str, channel: str) -> None:
        await self.group_add_all((group,), channel)

    async def group_add_all(self, groups: Iterable[str], channel: str) -> None:
        """Add the channel to every group: bookkeeping in memory, and a SUBSCRIBE (under the
        shard's lock) only for a group this process is not subscribed to yet. A socket joins
        its user's group and the activity group of every room it belongs to: fifty rooms
        cost fifty trips through channels-redis's ``group_add`` and its lock, a fifth of a
        handshake's CPU, though all but the first socket's were subscribed already."""
        if channel not in self.channels:
            raise RuntimeError(f"{channel!r} is not a channel of this process (see new_channel)")
        for group in groups:
            name = self._get_group_channel_name(group)
            members = self.groups.get(name)
            if members is None:
                members = self.groups[name] = set()
            members.add(channel)
            shard = self._get_shard(name)
            if name not in shard._subscribed_to:
                await shard.subscribe(name)

    async def group_discard(self, group: str, channel: str) -> None:
        await self.group_discard_all((group,), channel)

    async def group_discard_all(self, groups: Iterable[str], channel: str) -> None:
        """channels-redis unsubscribes from a group the moment its last local member leaves.
        Here the subscription stays ``UNSUBSCRIBE_AFTER_SECONDS`` longer, in case a member
        comes back: a socket follows its rooms' activity until it subscribes to one of them
        (leave, then join again when it unsubscribes), and a tab reloaded leaves and joins
        its groups within a second. Events for a group nobody here is in are dropped."""
        now = None
        for group in groups:
            name = self._get_group_channel_name(group)
            members = self.groups.get(name)
            if members is None or channel not in members:
                continue
            members.discard(channel)
            if members:
                continue
            del self.groups[name]
            self._drop_fanout(name)
            if now is None:
                now = asyncio.get_running_loop().time()
            self.idle_groups[name] = now
        if now is not None and self.unsubscriber is None:
            self.unsubscriber = asyncio.get_running_loop().create_task(
                self._unsubscribe_idle(), name="layer unsubscriber"
            )

    async def _unsubscribe_idle(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.idle_groups:
                await asyncio.sleep(UNSUBSCRIBE_AFTER_SECONDS / 2)
                due = loop.time() - UNSUBSCRIBE_AFTER_SECONDS
                for name, since in list(self.idle_groups.items()):
                    if since > due:
                        continue
                    del self.idle_groups[name]
                    if name not in self.groups:  # nobody came back
                        try:
                            await self._get_shard(name).unsubscribe(name)
                        except Exception:  # the connection is down: its reconnect re-subscribes it
                            logger.warning("Could not unsubscribe from %s", name, exc_info=True)
        finally:
            self.unsubscriber = None

    def _drop_fanout(self, name: str) -> None:
        fanout = self.fanouts.get(name)
        if fanout is not None and not fanout.feeds:
            del self.fanouts[name]
            fanout.close()

    async def flush(self) -> None:
        for fanout in self.fanouts.values():
            fanout.close()
        self.fanouts = {}
        self.idle_groups = {}
        if self.unsubscriber is not None:
            self.unsubscriber.cancel()
        await super().flush()


class FanoutChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` with one fan-out per room and process, whose consumers
    hear ``layer.reconnected`` after its subscriber connection to a Redis server came back."""

    def script_broadcast_channel(self, group: str, redis_url: str) -> str | None:
        """The Redis channel of ``group`` when a Lua script running on ``redis_url``'s server
        may publish the group's events itself (``cmsgpack.pack`` of the event): the group's
        shard is that server (pub/sub belongs to a server, not to a database) and the layer
        sends plain msgpack (no encryption, no random prefix). A Sentinel service is one
        server, whichever is its primary: the room's and the shard's are the same when they
        name the same Sentinels and master (a script then publishes on the primary it runs
        on, where the layer's subscriptions are). None otherwise: then the event goes
        through ``group_send``."""
        return _script_channel(self, group, redis_url)

    @functools.cached_property
    def _script_shards(self) -> tuple[str, tuple] | None:
        # Asked on every send; the layer's configuration does not change.
        return _script_shards_of(self)

    async def group_add_all(self, groups: Iterable[str], channel: str) -> None:
        """``group_add`` for several groups at once (see FanoutLoopLayer.group_add_all)."""
        await self._get_layer().group_add_all(groups, channel)

    async def group_discard_all(self, groups: Iterable[str], channel: str) -> None:
        await self._get_layer().group_discard_all(groups, channel)

    def _get_layer(self) -> FanoutLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = FanoutLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer


def _server_of(host: dict | tuple | str) -> tuple | None:
    """Which Redis server a connection setting reaches: (scheme, host, port, unix path) for a
    URL or a dict of redis-py's keyword arguments (channels-redis's ``hosts`` entries), and
    ("sentinel", the Sentinels, the master name) for a Sentinel service, given as a
    ``redis+sentinel://`` URL or as channels-redis's Sentinel dict: two settings with the
    same Sentinels and master name reach the same server, whichever is the primary now."""
    if isinstance(host, tuple):  # a dict's items, made hashable
        host = dict(host)
    if isinstance(host, str):
        try:
            service = parse_redis_url(host)
        except RedisUrlError:
            return None
        if service is not None:
            return ("sentinel", *service.identity)
        url = urlsplit(host)
        if url.scheme == "unix":
            return ("unix", None, None, url.path)
        return (url.scheme, url.hostname, url.port or 6379, None)
    if "master_name" in host:
        return ("sentinel", frozenset((h, int(p)) for h, p in host.get("sentinels", ())), host["master_name"])
    if "address" in host:
        return _server_of(host["address"])
    if "host" in host:
        return ("redis", host["host"], int(host.get("port", 6379)), None)
    return None


def _describe(host: dict) -> str:
    """A hosts entry for the log, without its password."""
    if "master_name" in host:
        return f"the primary of Sentinel service {host['master_name']!r}"
    if "address" in host:
        return redact(str(host["address"]))
    return f"{host.get('host')}:{host.get('port', 6379)}"


def _frozen(value):
    """A hosts entry as a hashable value (for the cache below): dicts and lists become tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


@functools.lru_cache(maxsize=4096)
def _script_channel_cached(prefix: str, hosts: tuple, group: str, redis_url: str) -> str | None:
    name = f"{prefix}__group__{group}"
    shard = hosts[_consistent_hash(name, len(hosts))]
    here = _server_of(redis_url)
    if here is None or here[0] == "rediss" or _server_of(shard) != here:
        return None
    return name


def _script_channel(layer: FanoutChannelLayer, group: str, redis_url: str) -> str | None:
    shards = layer._script_shards
    return None if shards is None else _script_channel_cached(*shards, group, redis_url)


def _script_shards_of(layer: FanoutChannelLayer) -> tuple[str, tuple] | None:
    """The layer's prefix and hosts (hashable), or None when its events are not plain msgpack."""
    serializer = layer._serializer
    if type(serializer) is not MsgPackSerializer or serializer.crypter or serializer.random_prefix_length:
        return None
    configured = layer._kwargs.get("hosts", layer._args[0] if layer._args else None)
    hosts = tuple(h if isinstance(h, str) else _frozen(h) for h in decode_hosts(configured))
    return layer._kwargs.get("prefix", "asgi"), hosts
