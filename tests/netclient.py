"""A wire-contract client over real TCP (the `websockets` library), for tests on real processes."""

from __future__ import annotations

import asyncio
import json
import uuid

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from websockets.asyncio.client import ClientConnection, connect


def session_key_for(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


class NetClient:
    def __init__(self, ws: ClientConnection, port: int):
        self.ws = ws
        self.port = port
        self.frames: list[dict] = []

    @classmethod
    async def open(cls, port: int, session_key: str | None, origin: str | None = "http://127.0.0.1") -> NetClient:
        headers = {"Cookie": f"sessionid={session_key}"} if session_key else {}
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws/",
            additional_headers=headers,
            origin=origin,
            open_timeout=10,
            max_size=2**22,
        )
        return cls(ws, port)

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def recv_type(self, frame_type: str, timeout: float = 5) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv(max(0.05, deadline - loop.time()))
            if frame["type"] == frame_type:
                return frame

    async def subscribe(self, room: str, since: int | None = None) -> dict:
        await self.send({"type": "subscribe", "room": room, "since": since})
        return await self.recv_type("subscribed")

    async def send_message(self, room: str, body: str, client_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "send", "room": room, "body": body, "client_id": client_id, "ref": client_id})
        return client_id

    async def collect(self, until, timeout: float = 20) -> None:
        """Read frames into ``self.frames`` until ``until(self)`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until(self):
            await self.recv(max(0.05, deadline - loop.time()))

    def of_type(self, frame_type: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == frame_type]

    async def close(self) -> None:
        await self.ws.close()
