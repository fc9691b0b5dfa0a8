"""The live side: a room's messages over the WebSocket, in seq order, each exactly once.

It follows the recovery contract of the site's docs/protocol.md:

- it subscribes with ``since`` (the last seq it yielded) and ``rev`` (the highest rev it saw),
  so the server replays what came after;
- it yields a message only if its seq is the next one: a lower seq is a duplicate (a replay
  overlapping live delivery) and is dropped; a higher one means a message was missed, and it
  resubscribes with ``since`` (unsubscribe, then subscribe) and lets the replay fill the gap;
- when the server says the replay was too long (``recovered: false``), it reads the missing
  messages over HTTP (``Client.history_after``) up to the seq the server named;
- when the connection drops (a web process restarted, a network failure, close codes 1011 or
  1013), it reconnects after an exponential backoff with jitter and resubscribes with ``since``;
- when the server restarts (a ``reconnect`` frame, then close code 1012, Service Restart), it
  reconnects after the frame's ``after_ms`` plus a little jitter, without backoff: a drain is
  not a failure;
- a refusal (HTTP 401/403 on the handshake, a ``forbidden`` or ``not_found`` error to the
  subscribe, ``kicked``, close code 1008) ends the iteration with ``SubscriptionEnded``.

With ``changes=True`` it also yields ``message_updated``, ``message_deleted`` and ``claps``
frames (of messages it has already yielded), those missed while away included (``rev``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from pubsub_client.errors import SubscriptionEnded

if TYPE_CHECKING:
    from pubsub_client.client import Client

CHANGE_TYPES = frozenset({"message_updated", "message_deleted", "claps"})
FINAL_ERRORS = frozenset({"forbidden", "not_found", "banned"})
# Close codes after which reconnecting is pointless: policy violation (the session or token ended).
FINAL_CLOSE_CODES = frozenset({1008})
SERVICE_RESTART = 1012  # the web process is draining: come back after its `reconnect` hint
# Added to a `reconnect` frame's wait (seconds, at most), so that clients told the same come apart.
RESTART_JITTER = 0.25


class Subscription:
    """``async for frame in client.subscribe("lobby"): ...``; ``since=None`` starts at the
    room's latest message (only new ones), ``since=0`` from its first."""

    def __init__(
        self,
        client: Client,
        room: str,
        *,
        since: int | None = None,
        rev: int | None = None,
        changes: bool = False,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.client, self.room, self.changes = client, room, changes
        self.last_seq, self.last_rev = since, rev
        self.backoff, self.backoff_max = backoff, backoff_max
        self.reconnects = 0  # how many times the connection was made again
        self.resubscribes = 0  # how many times a gap made it resubscribe
        self.http_recoveries = 0  # how many times it read missed messages over HTTP
        self._ws: ClientConnection | None = None
        self._closed = False
        self._reconnect_after: float | None = None  # a `reconnect` frame's wait (seconds)

    @property
    def ws_url(self) -> str:
        base = self.client.base_url
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/"

    def _delay(self, failures: int) -> float:
        ceiling = min(self.backoff_max, self.backoff * 2 ** max(0, failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> AsyncIterator[dict]:
        return self._frames()

    async def _subscribe(self, ws: ClientConnection) -> None:
        frame = {"type": "subscribe", "room": self.room, "since": self.last_seq, "rev": self.last_rev}
        await ws.send(json.dumps(frame))

    async def _frames(self) -> AsyncIterator[dict]:
        failures = 0
        while not self._closed:
            try:
                async with connect(
                    self.ws_url,
                    additional_headers={"Authorization": f"Bearer {self.client.token}"},
                    open_timeout=10,
                    max_size=2**22,
                ) as ws:
                    self._ws = ws
                    await self._subscribe(ws)
                    try:
                        async for frame in self._session(ws):
                            failures = 0
                            yield frame
                    except GeneratorExit:  # the caller stopped iterating: a normal close (1000)
                        self._closed = True
                        await ws.close()
                        raise
            except InvalidStatus as refusal:
                status = refusal.response.status_code
                if status in (401, 403):
                    raise SubscriptionEnded("forbidden", f"the handshake was refused ({status})") from refusal
            except ConnectionClosed as closed:
                if self._closed:
                    return
                if closed.rcvd is not None and closed.rcvd.code in FINAL_CLOSE_CODES:
                    raise SubscriptionEnded("closed", closed.rcvd.reason or "the server ended the session") from closed
                if closed.rcvd is not None and closed.rcvd.code == SERVICE_RESTART:
                    hint, self._reconnect_after = self._reconnect_after, None
                    self.reconnects += 1
                    failures = 0
                    wait = hint if hint is not None else random.uniform(0, 1)
                    await asyncio.sleep(wait + random.uniform(0, RESTART_JITTER))
                    continue
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            finally:
                self._ws = None
            if self._closed:
                return
            failures += 1
            self.reconnects += 1
            await asyncio.sleep(self._delay(failures))

    async def _session(self, ws: ClientConnection) -> AsyncIterator[dict]:
        """One connection's frames, as the contract says to take them."""
        resubscribing = False
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if frame.get("room") not in (None, self.room):
                continue
            if kind == "subscribed":
                resubscribing = False
                if self.last_seq is None:
                    self.last_seq = frame["seq"]  # from now on
                elif not frame.get("recovered", True) and frame["seq"] > self.last_seq:
                    # Too many to replay: read them over HTTP, then take the socket's from there.
                    self.http_recoveries += 1
                    missed = await asyncio.to_thread(self._missed, self.last_seq, frame["seq"])
                    for message in missed:
                        if message["seq"] == self.last_seq + 1:
                            self.last_seq = message["seq"]
                            self._saw_rev(message)
                            yield {"type": "message", **message}
                if self.last_rev is None:
                    self.last_rev = frame.get("rev")
            elif kind == "message":
                seq = frame["seq"]
                if seq <= self.last_seq:
                    continue  # already yielded
                if seq > self.last_seq + 1:
                    if not resubscribing:  # one missed: let a replay bring it, in order
                        resubscribing = True
                        self.resubscribes += 1
                        await ws.send(json.dumps({"type": "unsubscribe", "room": self.room}))
                        await self._subscribe(ws)
                    continue
                self.last_seq = seq
                self._saw_rev(frame)
                yield frame
            elif kind in CHANGE_TYPES:
                self._saw_rev(frame)
                if self.changes and frame.get("seq", 0) <= (self.last_seq or 0):
                    yield frame
            elif kind == "reconnect":  # a close (1012) follows: the server is restarting
                self._reconnect_after = max(0, frame.get("after_ms") or 0) / 1000
            elif kind == "kicked":
                raise SubscriptionEnded("kicked", frame.get("reason", ""))
            elif kind == "error":
                code = frame.get("code")
                if code in FINAL_ERRORS:
                    raise SubscriptionEnded(code, frame.get("detail", ""))
                if code in ("rate_limited", "unavailable"):  # the subscribe: ask again later
                    await asyncio.sleep(float(frame.get("retry_after") or self._delay(1)))
                    await self._subscribe(ws)
            # presence, typing, unread, pong...: not this iterator's business

    def _missed(self, after: int, upto: int) -> list[dict]:
        return list(self.client.history_after(self.room, after, upto=upto))

    def _saw_rev(self, frame: dict) -> None:
        rev = frame.get("rev")
        if rev is not None and (self.last_rev is None or rev > self.last_rev):
            self.last_rev = rev
