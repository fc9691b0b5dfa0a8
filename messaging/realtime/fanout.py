"""A room's messages delivered to this process's sockets: ordered once per room, written once per socket.

The room's group lives on the channel layer (``messaging.realtime.layers.FanoutChannelLayer``):
the process subscribes to it once, and the layer hands each ``room.message`` event,
decoded once, to the room's ``RoomFanout``. The fan-out keeps the room's order for the
whole process, as Phoenix's and Centrifugo's per-node hubs do:

- it delivers ``seq`` n+1 only after n, to every attached socket, the same text to each;
- an event that arrives ahead of a missing one waits ``GAP_WAIT_SECONDS``; then the gap
  is read from the room's buffer (Redis, then PostgreSQL) once for every socket;
- a socket attached while it replays (``subscribe`` with ``since``) holds what arrives
  until the replay is written, then gets exactly the messages after what it replayed;
- a socket that does not read never holds the room up: its ``messaging.realtime.sockets.Outbox``
  keeps what the server cannot take yet, up to a bound, and past it the socket is cut off
  (its client resubscribes with ``since``).

Other room events (changes, claps, typing, presence) are rare next to messages and still
go through each consumer, which filters them per user.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from channels.db import database_sync_to_async
from redis.exceptions import RedisError

from messaging import metrics
from messaging.realtime.sockets import Framed
from messaging.selectors import messages_between
from protocol.wire import encode, message_wire

if TYPE_CHECKING:
    from messaging.realtime.sockets import Outbox

logger = logging.getLogger(__name__)

# How long an event that arrived ahead of a missing one waits for it before the gap is
# read from the buffer.
GAP_WAIT_SECONDS = 0.2
# Events held for one room while a gap is open; past this every socket of the room in this
# process is cut off and its client resubscribes with `since`.
PENDING_MAX = 2000


# --- A room in this process ------------------------------------------------------------


class Feed:
    """One socket's subscription to a room's fan-out.

    Until it starts it holds what the fan-out delivers (its socket is still writing the
    replay); then it gets every message with a greater ``seq`` than where it started.
    """

    __slots__ = ("after", "attached", "held", "on_broken", "outbox")

    def __init__(self, outbox: Outbox, on_broken: Callable[[], None]) -> None:
        self.outbox = outbox
        self.on_broken = on_broken  # the room's order could not be kept for this socket
        self.after: int | None = None  # None while the socket replays
        self.held: list[tuple[int, str]] = []
        self.attached = True


class RoomFanout:
    """The room's messages, in ``seq`` order, to every socket of this process subscribed to it."""

    def __init__(self, room_id: int, slug: str) -> None:
        self.room_id = room_id
        self.slug = slug
        self.feeds: list[Feed] = []
        # The last seq delivered; None until a socket has said where it starts.
        self.last_seq: int | None = None
        self.pending: dict[int, str] = {}  # seq -> frame, waiting for an earlier seq
        self.inbox: deque[dict] = deque()
        self.wakeup = asyncio.Event()
        self.gap_task: asyncio.Task | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"fan-out of room {room_id}")

    def offer(self, event: dict) -> None:
        """A ``room.message`` event from the layer, decoded once for the whole process:
        ``room_id``, ``seq``, ``record`` (the record as the buffer stores it, JSON) and ``ts``
        (when it was stored); its frame is made here, once, when its turn comes."""
        self.inbox.append(event)
        self.wakeup.set()

    def attach(self, outbox: Outbox, on_broken: Callable[[], None]) -> Feed:
        """Call before the socket reads the room's latest seq: whatever is published after
        that read reaches this process after the attach, so the feed holds it."""
        feed = Feed(outbox, on_broken)
        self.feeds = [*self.feeds, feed]
        return feed

    async def start(self, feed: Feed, *, after: int) -> None:
        """The socket has written everything up to ``after``: write what it held, then go live."""
        if self.last_seq is None:
            self.last_seq = after
            await self._take_pending()
        held, feed.held = feed.held, []
        feed.after = after
        # What the fan-out delivered beyond `after` must all be in `held` (it can be nowhere
        # else: it was published after the attach); if it were not, the socket would miss it.
        if self.last_seq > after and not any(seq == after + 1 for seq, _ in held):
            logger.error("room %s: a socket started at %d, the fan-out is at %d", self.room_id, after, self.last_seq)
            self.detach(feed)
            feed.on_broken()
            return
        for seq, text in held:
            if seq > after:
                await feed.outbox.write(text)

    def detach(self, feed: Feed) -> None:
        feed.attached = False
        self.feeds = [f for f in self.feeds if f is not feed]

    def close(self) -> None:
        self.task.cancel()
        if self.gap_task is not None:
            self.gap_task.cancel()

    # --- delivery ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            sent_at = metrics.batch_sent_at(self.inbox)
            while self.inbox:
                event = self.inbox.popleft()
                self.pending[event["seq"]] = event["record"]
            if self.last_seq is not None:
                await self._take_pending()
                metrics.batch_written(sent_at)

    async def _take_pending(self) -> None:
        batch: list[tuple[int, str]] = []
        while self.last_seq + 1 in self.pending:
            self.last_seq += 1
            record = orjson.loads(self.pending.pop(self.last_seq))
            batch.append((self.last_seq, encode(message_wire(record, room=self.slug))))
        if batch:
            # What arrived together goes out together: one write per socket for the batch.
            await self._deliver(batch)
        for stale in [s for s in self.pending if s <= self.last_seq]:
            del self.pending[stale]
        if len(self.pending) > PENDING_MAX:
            self._break_all(f"{len(self.pending)} events wait for a gap")
        elif self.pending and self.gap_task is None:
            self.gap_task = asyncio.get_running_loop().create_task(self._fill_gap())

    async def _deliver(self, batch: list[tuple[int, str]]) -> None:
        """Consecutive messages, in seq order, to every socket of the room."""
        metrics.MESSAGES_DELIVERED.inc(len(self.feeds) * len(batch))
        texts = [text for _, text in batch]
        framed = Framed(texts)  # the batch's frames, framed once for the room's sockets
        first = batch[0][0]
        for feed in self.feeds:
            if feed.after is None:
                feed.held.extend(batch)
            elif not feed.attached:
                continue
            elif feed.outbox.socket.direct:  # no wait: nothing can happen to the feed meanwhile
                if first > feed.after:
                    feed.outbox.write_many(texts, framed)
                else:
                    feed.outbox.write_many([t for s, t in batch if s > feed.after])
            else:
                for seq, text in batch:
                    if not feed.attached:
                        break  # it left while the room delivered
                    if seq > feed.after:
                        await feed.outbox.write(text)

    async def _fill_gap(self) -> None:
        try:
            await asyncio.sleep(GAP_WAIT_SECONDS)
            while self.pending and self.last_seq is not None:
                first_waiting = min(self.pending)
                if first_waiting > self.last_seq + 1:
                    missing = await database_sync_to_async(messages_between)(
                        room_id=self.room_id, after=self.last_seq, upto=first_waiting - 1
                    )
                    for record, state in missing:
                        if record["seq"] > self.last_seq:
                            self.last_seq = record["seq"]
                            text = encode(message_wire(record, room=self.slug, state=state))
                            await self._deliver([(self.last_seq, text)])
                    # Whatever is neither in the buffer nor in PostgreSQL is gone for good:
                    # skip it rather than stall the room.
                    self.last_seq = max(self.last_seq, first_waiting - 1)
                await self._take_pending()
        except RedisError:
            logger.exception("could not fill a gap in room %s; its sockets resync", self.room_id)
            self._break_all("the gap could not be read")
        finally:
            self.gap_task = None

    def _break_all(self, why: str) -> None:
        """Cut every socket of the room off (their clients resubscribe with `since`) and start afresh."""
        logger.warning("room %s: cutting off %d sockets of this process: %s", self.room_id, len(self.feeds), why)
        feeds, self.feeds = self.feeds, []
        self.pending.clear()
        self.last_seq = None
        for feed in feeds:
            feed.attached = False
            feed.on_broken()
