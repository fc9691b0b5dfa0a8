"""A client that follows the wire contract through failures (ChatClient: one tab,
reconnecting, resubscribing with ``since``, recovering over HTTP), and the ways the tests drive
many of them: open them, let them talk, blast, wait for delivery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from urllib.request import Request, urlopen

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.faults.kit.ledger import ACKED, REFUSED, UNKNOWN, Ledger, Send


class ChatClient:
    """One tab: one socket at a time, any number of rooms, reconnecting to any live web
    process and resubscribing with ``since`` = the last ``seq`` it saw."""

    def __init__(
        self,
        name: str,
        session_key: str,
        ports: Callable[[], list[int]],
        rooms: Iterable[str],
        *,
        first_port: int | None = None,
        reply_timeout: float = 10.0,
        reconnect_for: float = 90.0,
        backoff: tuple[float, float] = (0.1, 2.0),
    ):
        self.name = name
        self.session_key = session_key
        self.ports = ports
        self.rooms = list(rooms)
        self.port = first_port
        self.reply_timeout = reply_timeout
        self.reconnect_for = reconnect_for
        self.backoff = backoff
        self.ws = None
        self.last_seq: dict[str, int] = dict.fromkeys(self.rooms, 0)
        self.received: dict[str, list[int]] = {room: [] for room in self.rooms}
        self.client_ids: dict[str, list[str]] = {room: [] for room in self.rooms}
        self.resyncing: set[str] = set()
        self.waiters: dict[str, asyncio.Future] = {}
        self.connected = asyncio.Event()
        self.closing = False
        self.reader: asyncio.Task | None = None
        self.reconnects = 0
        self.failed_handshakes = 0
        self.duplicates = 0
        self.gaps = 0
        self.unrecovered = 0
        self.http_recovered = 0
        self.close_codes: Counter = Counter()
        self.errors: Counter = Counter()
        self.ports_used: list[int] = []
        # The longest time this client was without a live subscription after losing one.
        self.down_since: float | None = None
        self.longest_outage = 0.0
        # A `reconnect` frame's wait (seconds), for the close (1012) that follows it.
        self.reconnect_after: float | None = None

    # The connection -------------------------------------------------------------------

    def _next_port(self) -> int:
        live = sorted(self.ports())
        if self.port in live and (not self.ports_used or len(live) == 1):
            return self.port
        # After a failure, another process: spread by name, move on with each attempt.
        others = [p for p in live if p != self.port] or live
        return others[(self.reconnects + self.failed_handshakes + sum(map(ord, self.name))) % len(others)]

    async def _connect(self, port: int):
        """A new socket to the web process on ``port`` (a subclass may reach the site
        another way: through a proxy, tests/container)."""
        return await connect(
            f"ws://127.0.0.1:{port}/ws/",
            additional_headers={"Cookie": f"sessionid={self.session_key}"},
            origin="http://127.0.0.1",
            open_timeout=15,
            close_timeout=2,
            max_size=2**22,
            ping_interval=None,
        )

    async def _open(self) -> None:
        port = self._next_port()
        ws = await self._connect(port)
        self.ws, self.port = ws, port
        self.ports_used.append(port)
        for room in self.rooms:
            self.resyncing.add(room)
            await ws.send(json.dumps({"type": "subscribe", "room": room, "since": self.last_seq[room]}))

    async def start(self) -> ChatClient:
        """Connect (retrying as a browser does: a handshake may be refused or time out in a
        crowd) and subscribe."""
        try:
            await self._open()
        except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
            self.failed_handshakes += 1
            if not await self._reconnect():
                raise
            self.reconnects -= 1  # a first connection, not a reconnection
        self.reader = asyncio.create_task(self._read())
        await self.wait_subscribed()
        return self

    async def wait_subscribed(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def _reconnect(self) -> bool:
        self.connected.clear()
        deadline = time.monotonic() + self.reconnect_for
        delay, ceiling = self.backoff
        while not self.closing and time.monotonic() < deadline:
            try:
                await self._open()
                self.reconnects += 1
                return True
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
                self.failed_handshakes += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter, as the browser client
                delay = min(delay * 2, ceiling)
        return False

    async def _read(self) -> None:
        while not self.closing:
            try:
                raw = await self.ws.recv()
            except ConnectionClosed as closed:
                self._fail_waiters()
                if self.closing:
                    return
                self.down_since = time.monotonic()
                code = closed.rcvd.code if closed.rcvd else 1006
                self.close_codes[code] += 1
                if code == 1012 and self.reconnect_after is not None:
                    # The process is restarting: come back after its hint, with jitter (as the browser).
                    await asyncio.sleep(self.reconnect_after + random.uniform(0, 0.1))
                self.reconnect_after = None
                if not await self._reconnect():
                    return
                continue
            self._on_frame(json.loads(raw))

    def _fail_waiters(self) -> None:
        for future in self.waiters.values():
            if not future.done():
                future.set_result(UNKNOWN)
        self.waiters.clear()

    def _on_frame(self, frame: dict) -> None:
        kind = frame.get("type")
        room = frame.get("room")
        if kind == "message" and room in self.last_seq:
            if room in self.resyncing:
                return  # the old subscription's tail: the replay after `subscribed` covers it
            seq = frame["seq"]
            if seq <= self.last_seq[room]:
                self.duplicates += 1
                return
            if seq > self.last_seq[room] + 1:
                # The contract's gap rule: resubscribe with the last seq seen.
                self.gaps += 1
                self._resubscribe(room)
                return
            self.last_seq[room] = seq
            self.received[room].append(seq)
            self.client_ids[room].append(frame["client_id"])
        elif kind == "subscribed" and room in self.last_seq:
            self.resyncing.discard(room)
            if not frame["recovered"]:
                self.unrecovered += 1
                asyncio.get_running_loop().create_task(self._recover_over_http(room, frame["seq"]))
            if not self.resyncing:
                self.connected.set()
                if self.down_since is not None:
                    self.longest_outage = max(self.longest_outage, time.monotonic() - self.down_since)
                    self.down_since = None
        elif kind == "ack":
            self._settle(frame.get("ref"), f"{ACKED}:{frame['seq']}")
        elif kind == "reconnect":
            self.reconnect_after = frame["after_ms"] / 1000
        elif kind == "error":
            self.errors[frame["code"]] += 1
            self._settle(frame.get("ref"), f"{REFUSED}:{frame['code']}")

    def _settle(self, ref: object, outcome: str) -> None:
        future = self.waiters.pop(ref, None) if isinstance(ref, str) else None
        if future is not None and not future.done():
            future.set_result(outcome)

    def _resubscribe(self, room: str) -> None:
        self.resyncing.add(room)
        frame = {"type": "subscribe", "room": room, "since": self.last_seq[room]}
        asyncio.get_running_loop().create_task(self._send_quietly(frame))

    async def _send_quietly(self, frame: dict) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(frame))

    async def _recover_over_http(self, room: str, upto: int) -> None:
        """Too many missed for a replay: the contract says reload history over HTTP."""
        self.resyncing.add(room)
        while self.last_seq[room] < upto:
            page = await asyncio.to_thread(self._history_after, room, self.last_seq[room])
            if not page["messages"]:
                break
            for message in page["messages"]:
                if message["seq"] == self.last_seq[room] + 1:
                    self.last_seq[room] = message["seq"]
                    self.received[room].append(message["seq"])
                    self.client_ids[room].append(message["client_id"])
            self.http_recovered += len(page["messages"])
        self._resubscribe(room)

    def _history_after(self, room: str, after: int) -> dict:
        request = Request(
            f"http://127.0.0.1:{self.port}/rooms/{room}/messages/?after={after}&limit=200",
            headers={"Cookie": f"sessionid={self.session_key}"},
        )
        with urlopen(request, timeout=10) as response:  # noqa: S310 (our own 127.0.0.1)
            return json.loads(response.read())

    # Sending --------------------------------------------------------------------------

    async def attempt(self, send: Send) -> str:
        """One attempt at a send; records and returns its outcome."""
        try:
            await asyncio.wait_for(self.connected.wait(), self.reply_timeout)
        except TimeoutError:
            return "unsent"  # never left the client: not an attempt
        future = asyncio.get_running_loop().create_future()
        self.waiters[send.client_id] = future
        frame = {"type": "send", "room": send.room, "body": send.body, "client_id": send.client_id}
        try:
            await self.ws.send(json.dumps({**frame, "ref": send.client_id}))
        except ConnectionClosed:
            self.waiters.pop(send.client_id, None)
            return "unsent"
        try:
            outcome = await asyncio.wait_for(future, self.reply_timeout)
        except TimeoutError:
            self.waiters.pop(send.client_id, None)
            outcome = UNKNOWN
        if outcome.startswith(ACKED):
            send.seq = int(outcome.split(":")[1])
            send.acked_at = time.monotonic()
            outcome = ACKED
        send.attempts.append(outcome)
        return outcome

    async def send_until_settled(
        self,
        send: Send,
        *,
        retry: Iterable[str] = ("refused:unavailable", UNKNOWN, "unsent"),
        give_up_after: float = 60.0,
    ) -> str:
        """Send, and retry with the same ``client_id`` while the outcome is one of ``retry``."""
        retry = set(retry)
        deadline = time.monotonic() + give_up_after
        delay = 0.1
        while True:
            outcome = await self.attempt(send)
            if outcome not in retry or time.monotonic() > deadline:
                return outcome
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


async def open_clients(
    specs: list[tuple[str, str, int]], ports: Callable[[], list[int]], rooms: list[str], **options
) -> list[ChatClient]:
    """Open clients (name, session key, first port) concurrently, each subscribed to ``rooms``."""
    clients = [ChatClient(name, key, ports, rooms, first_port=port, **options) for name, key, port in specs]
    await asyncio.gather(*(c.start() for c in clients))
    return clients


async def talk(
    clients: list[ChatClient],
    ledger: Ledger,
    rooms: list[str],
    per_client: int,
    *,
    interval: float = 0.0,
    retry: Iterable[str] = ("refused:unavailable", UNKNOWN, "unsent"),
    give_up_after: float = 60.0,
) -> None:
    """Each client sends ``per_client`` messages, one at a time, over the rooms in turn."""

    async def one(index: int, client: ChatClient) -> None:
        for i in range(per_client):
            room = rooms[(index + i) % len(rooms)]
            send = ledger.new(room, f"{client.name} #{i}")
            await client.send_until_settled(send, retry=retry, give_up_after=give_up_after)
            if interval:
                await asyncio.sleep(interval)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))


async def blast(clients: list[ChatClient], ledger: Ledger, room: str, per_client: int, window: int = 50) -> None:
    """Each client keeps up to ``window`` sends in flight: the fastest the real path goes."""

    async def one(client: ChatClient) -> None:
        gate = asyncio.Semaphore(window)

        async def single(i: int) -> None:
            async with gate:
                await client.send_until_settled(ledger.new(room, f"{client.name} bulk {i}"))

        await asyncio.gather(*(single(i) for i in range(per_client)))

    await asyncio.gather(*(one(c) for c in clients))


async def wait_for_delivery(clients: list[ChatClient], latest: dict[str, int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(c.last_seq[r] >= latest[r] for c in clients for r in c.rooms if r in latest):
            return True
        await asyncio.sleep(0.1)
    return False
