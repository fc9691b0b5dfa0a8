"""Drive the real ASGI application (Channels on the Redis layer) as a browser would."""

from __future__ import annotations

import asyncio
import json
import uuid

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from pubsub_site.asgi import application
from tests import netclient

session_key_for = database_sync_to_async(netclient.session_key_for)


# Frames about who is around (and about the room's members and details), skipped unless a test asks for them.
AMBIENT = frozenset(
    {"presence", "presence_diff", "unread", "typing", "clap_board", "member_updated", "member_left", "room_updated"}
)


class Client:
    """A WebSocket client with helpers for the wire contract."""

    def __init__(self, communicator: WebsocketCommunicator, ignore: frozenset[str] = AMBIENT):
        self.ws = communicator
        self.ignore = ignore
        # Message frames that came before the ack ``post`` waited for: the fan-out may deliver
        # one's own message ahead of its ack, and ``messages`` must still find it.
        self.early_messages: list[dict] = []

    async def send(self, frame: dict) -> None:
        await self.ws.send_to(text_data=json.dumps(frame))

    async def recv(self, timeout: float = 3) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await self.ws.receive_from(timeout=max(0.05, deadline - loop.time())))
            if frame["type"] not in self.ignore:
                return frame

    async def recv_type(self, frame_type: str, timeout: float = 3) -> dict:
        """The next frame of ``frame_type``, skipping others (a message that ``post`` set aside
        comes first)."""
        if frame_type == "message" and self.early_messages:
            return self.early_messages.pop(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await self.ws.receive_from(timeout=max(0.05, deadline - loop.time())))
            if frame["type"] == frame_type:
                return frame

    async def nothing_more(self, timeout: float = 0.3) -> bool:
        """True when no frame (but ignored ones) arrives within ``timeout``.

        (A timed-out receive would cancel the application, hence receive_nothing.)
        """
        while not await self.ws.receive_nothing(timeout=timeout):
            frame = json.loads(await self.ws.receive_from())
            if frame["type"] not in self.ignore:
                raise AssertionError(f"unexpected frame: {frame}")
        return True

    async def subscribe(self, room: str, since: int | None = None, rev: int | None = None) -> dict:
        await self.send({"type": "subscribe", "room": room, "since": since, "rev": rev})
        return await self.recv_type("subscribed")

    async def post(self, room: str, body: str, client_id: str | None = None) -> dict:
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while True:
            frame = json.loads(await self.ws.receive_from(timeout=max(0.05, deadline - loop.time())))
            if frame["type"] == "ack":
                return frame
            if frame["type"] == "message":
                self.early_messages.append(frame)

    async def messages(self, count: int, timeout: float = 5) -> list[dict]:
        return [await self.recv_type("message", timeout=timeout) for _ in range(count)]

    async def close(self) -> None:
        await self.ws.disconnect()


async def connect(
    user=None, *, origin: bytes | None = b"http://localhost", extra_headers=(), ignore: frozenset[str] = AMBIENT
) -> tuple[bool, object, Client]:
    headers = list(extra_headers)
    if origin is not None:
        headers.append((b"origin", origin))
    if user is not None:
        headers.append((b"cookie", f"sessionid={await session_key_for(user)}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return connected, code, Client(communicator, ignore)


async def connected(user, ignore: frozenset[str] = AMBIENT) -> Client:
    ok, code, client = await connect(user, ignore=ignore)
    assert ok, code
    return client


async def eventually(check, timeout: float = 3.0) -> None:
    """Wait until ``check()`` holds: for what the server does after it answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
