"""Whether a user has any open socket, in any web process: what the mention e-mails ask.

Presence (messaging.realtime.presence) only knows of sockets subscribed to a room; a tab open on
the room list or the notifications page subscribes to none, yet its user sees mentions
live. So each web process (each event loop) counts its open sockets per user, and while
a user has any there, keeps one entry, the process's token, in the user's
``pubsub:online:<user id>`` sorted set, scored by when it expires. One task per process
pushes the expiries of all its users back every PRESENCE_HEARTBEAT seconds (a script call
per MARK_BATCH users) and re-adds any entry a racing close removed; a process that dies
without saying goodbye leaves entries that expire after PRESENCE_TTL. A user is online
while any of their entries has not expired.

The sets live on the first room server (``get_redis(None)``), where the worker reads them
(``messaging.store.online.users_online``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref

from django.conf import settings
from redis.exceptions import RedisError

from messaging.store.lua import LuaScript
from messaging.store.online import online_key
from pubsub_site.redis.client import get_async_redis

logger = logging.getLogger(__name__)


# How long a socket's opening or closing waits to be written with the others.
FLUSH_SECONDS = 0.5


class OnlineTracker:
    """This process's open sockets per user, and their entries in Redis kept alive."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.user_of: dict[str, int] = {}  # channel -> user id
        self.channels: dict[int, set[str]] = {}  # user id -> channels
        self.task: asyncio.Task | None = None
        # Users whose first socket opened or last closed since the last flush: written to
        # Redis together, FLUSH_SECONDS later, in one pipeline (a handshake waits for none).
        self.changed: set[int] = set()
        self.flusher: asyncio.TimerHandle | None = None

    def opened(self, user_id: int, channel: str) -> bool:
        """Count the socket; True when it is the user's first in this process."""
        self.user_of[channel] = user_id
        channels = self.channels.setdefault(user_id, set())
        channels.add(channel)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="online keeper")
        return len(channels) == 1

    def closed(self, channel: str) -> int | None:
        """Forget the socket; the user's id when it was their last in this process."""
        user_id = self.user_of.pop(channel, None)
        if user_id is None:
            return None  # never counted (refused before it was accepted)
        channels = self.channels.get(user_id, set())
        channels.discard(channel)
        if channels:
            return None
        self.channels.pop(user_id, None)
        return user_id

    def touch(self, user_id: int) -> None:
        self.changed.add(user_id)
        if self.flusher is None:
            loop = asyncio.get_running_loop()
            self.flusher = loop.call_later(FLUSH_SECONDS, lambda: loop.create_task(self._flush_logged()))

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except RedisError as error:  # the next heartbeat writes the entries; closed ones expire
            logger.warning("could not write who is online: %r", error)

    async def flush(self) -> None:
        """Write the users that changed: an entry for those with a socket here, none for the others."""
        if self.flusher is not None:
            self.flusher.cancel()
            self.flusher = None
        changed, self.changed = self.changed, set()
        if not changed:
            return
        client = get_async_redis(None)
        gone = [user_id for user_id in changed if user_id not in self.channels]
        await _mark(client, [user_id for user_id in changed if user_id in self.channels], self.token)
        if gone:
            pipe = client.pipeline(transaction=False)
            for user_id in gone:
                pipe.zrem(online_key(user_id), self.token)
            await pipe.execute()

    async def _run(self) -> None:
        """Every PRESENCE_HEARTBEAT seconds, for ever. A Redis failure is logged; the next beat
        tries again (entries live PRESENCE_TTL, several beats)."""
        while True:
            await asyncio.sleep(settings.PRESENCE_HEARTBEAT)
            try:
                await self.beat()
            except RedisError:
                logger.warning("online heartbeat failed", exc_info=True)

    async def beat(self) -> None:
        await _mark(get_async_redis(None), list(self.channels), self.token)


# KEYS: the users' online sets; ARGV: the process's token, its entries' expiry, now, the sets'
# TTL in seconds. Adds or refreshes the entry, drops the entries of processes that died.
MARK_SCRIPT = """
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
  redis.call('EXPIRE', key, ARGV[4])
end
return #KEYS
"""
_mark_script = LuaScript(MARK_SCRIPT)
# Users per script call: a call runs alone in Redis, and the event loop waits for none of them.
MARK_BATCH = 500


async def _mark(client, user_ids: list[int], token: str) -> None:
    """Refresh the process's entry of each user, ``MARK_BATCH`` users a call. It was three
    pipelined commands a user: packing 6,000 of them for a process with 2,000 users held its
    event loop for tens of milliseconds every heartbeat (a p99 spike for every socket)."""
    now = time.time()
    args = (token, now + settings.PRESENCE_TTL, now, int(settings.PRESENCE_TTL + settings.PRESENCE_HEARTBEAT))
    for start in range(0, len(user_ids), MARK_BATCH):
        keys = [online_key(user_id) for user_id in user_ids[start : start + MARK_BATCH]]
        await _mark_script.arun(client, keys=keys, args=args)


_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OnlineTracker] = weakref.WeakKeyDictionary()


def tracker() -> OnlineTracker:
    """The running loop's tracker."""
    loop = asyncio.get_running_loop()
    found = _trackers.get(loop)
    if found is None:
        found = _trackers[loop] = OnlineTracker()
    return found


def connection_opened(*, user_id: int, channel: str) -> None:
    """A socket of the user was accepted. Redis hears of it within FLUSH_SECONDS, with the
    others of that moment; a Redis failure is logged, and the next heartbeat writes the entry."""
    keeper = tracker()
    if keeper.opened(user_id, channel):
        keeper.touch(user_id)


def sockets_of(*, user_id: int) -> int:
    """How many sockets of the user this process (its running loop) holds."""
    return len(tracker().channels.get(user_id, ()))


def connection_closed(*, channel: str) -> None:
    """A socket ended (or was refused: then nothing happens). Without a Redis, the entry
    expires by itself after PRESENCE_TTL."""
    keeper = tracker()
    user_id = keeper.closed(channel)
    if user_id is not None:
        keeper.touch(user_id)
