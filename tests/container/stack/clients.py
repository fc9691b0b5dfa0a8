"""Clients of a running stack, through its proxy as a browser: HTTPS with a cookie jar
(Browser: sign-up, pages, uploads, downloads, history), a WebSocket speaking docs/protocol.md
(Socket), and off_loop to run a coroutine on a loop of its own."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from tests.container.stack.compose import Stack

# WebSocket handshakes that were refused and tried again (printed at the end of the run too,
# tests/container/conftest.py).
REFUSED_HANDSHAKES: list[str] = []


class Browser:
    """HTTPS through the proxy with a cookie jar: what a browser does for sign-up and pages."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=stack.ssl_context()),
            urllib.request.HTTPCookieProcessor(self.jar),
        )

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str, str]:
        """(status, final URL, body), following redirects."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        # Always https://localhost:<port>, the proxy: no other scheme or host.
        request = urllib.request.Request(self.stack.origin + path, data=body, headers=headers or {})  # noqa: S310
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode(errors="replace")

    def get(self, path: str) -> tuple[int, str, str]:
        return self.request(path)

    def post_form(self, path: str, fields: dict) -> tuple[int, str, str]:
        """GET the form (for the CSRF cookie), then POST it as a browser on this origin does."""
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        token = self.cookie("csrftoken")
        assert token, "no CSRF cookie"
        headers = {"Origin": self.stack.origin, "Referer": self.stack.origin + path}
        return self.request(path, {"csrfmiddlewaretoken": token, **fields}, headers)

    def upload(self, room: str, name: str, data: bytes) -> tuple[int, dict]:
        """A file to the room's upload endpoint, as the composer sends it (multipart, the CSRF
        token of a page seen before); (status, JSON answer)."""
        token = self.cookie("csrftoken")
        assert token, "no CSRF cookie: open a form first"
        boundary = "----upload" + secrets.token_hex(8)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        path = f"/rooms/{room}/attachments/"
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-CSRFToken": token,
            "Origin": self.stack.origin,
            "Referer": self.stack.origin + f"/rooms/{room}/",
        }
        request = urllib.request.Request(self.stack.origin + path, data=body, headers=headers)  # noqa: S310
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {"body": error.read().decode(errors="replace")[:2000]}

    def download(self, path: str) -> tuple[int, str, bytes]:
        """(status, final URL, bytes), following redirects (to the presigned URL, via /_s3/)."""
        request = urllib.request.Request(self.stack.origin + path)  # noqa: S310
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.geturl(), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read()

    def sign_up(self, username: str, password: str) -> None:
        status, url, body = self.post_form(
            "/accounts/signup/", {"username": username, "password1": password, "password2": password}
        )
        # A new account lands in the default room (DEFAULT_ROOM, Lobby: issue 21).
        assert (status, urllib.parse.urlsplit(url).path) == (200, "/rooms/lobby/"), (status, url, body[:2000])
        assert self.cookie("sessionid"), "signed up but no session cookie"

    def create_room(self, name: str) -> str:
        status, url, body = self.post_form("/rooms/new/", {"name": name, "visibility": "public"})
        path = urllib.parse.urlsplit(url).path
        assert status == 200 and path.startswith("/rooms/"), (status, url, body[:2000])
        return path.rstrip("/").rsplit("/", 1)[1]

    def history(self, slug: str) -> list[dict]:
        status, _, body = self.get(f"/rooms/{slug}/messages/?after=0&limit=200")
        assert status == 200, (status, body[:500])
        return json.loads(body)["messages"]


class Socket:
    """One WebSocket through the proxy (wss), speaking docs/protocol.md."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.frames: list[dict] = []

    @classmethod
    async def open(cls, stack: Stack, browser: Browser, probe: str, room: str, attempts: int = 6) -> Socket:
        """Connect and subscribe to ``room`` as the site's client does (static/js/socket.js):
        a refused handshake, or a connection closed before it is subscribed (1013, Try Again
        Later, while the server's Redis is coming back), is tried again after a growing
        pause. Each such retry is recorded (REFUSED_HANDSHAKES)."""
        for attempt in range(1, attempts + 1):
            ws = None
            try:
                ws = await connect(
                    f"wss://localhost:{stack.https_port}/ws/?probe={probe}",
                    ssl=stack.ssl_context(),
                    additional_headers={"Cookie": f"sessionid={browser.cookie('sessionid')}"},
                    origin=stack.origin,
                    open_timeout=20,
                )
                socket = cls(ws)
                await socket.subscribe(room)
                return socket
            except (InvalidStatus, InvalidMessage, ConnectionClosed, OSError) as error:
                REFUSED_HANDSHAKES.append(f"{probe}, attempt {attempt}: {error}")
                if ws is not None:
                    await ws.close()
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def send(self, frame: dict) -> None:
        await self.ws.send(json.dumps(frame))

    async def expect(self, predicate, timeout: float = 15) -> dict:
        """The first frame (already received or still to come) for which predicate holds."""
        for frame in self.frames:
            if predicate(frame):
                return frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no such frame within {timeout} s; got {self.frames[-10:]}")
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), remaining))
            self.frames.append(frame)
            if frame.get("type") == "error":
                raise AssertionError(f"error frame: {frame}")
            if predicate(frame):
                return frame

    async def subscribe(self, room: str) -> dict:
        await self.send({"type": "subscribe", "room": room, "since": None})
        return await self.expect(lambda f: f["type"] == "subscribed" and f["room"] == room)

    async def post(self, room: str, body: str) -> dict:
        """Send a message; its ack."""
        client_id = str(uuid.uuid4())
        await self.send({"type": "send", "room": room, "body": body, "client_id": client_id})
        return await self.expect(lambda f: f["type"] == "ack" and f["client_id"] == client_id)

    async def clap(self, room: str, seq: int, count: int) -> None:
        await self.send({"type": "clap", "room": room, "seq": seq, "count": count})

    async def close(self) -> None:
        await self.ws.close()


def off_loop(coroutine_function, *args):
    """Run a coroutine on an event loop of its own in another thread, whatever the state of
    this thread's loop (a test package before may have left one marked as running)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine_function(*args))
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
