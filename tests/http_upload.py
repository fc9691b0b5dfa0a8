"""Uploading a file to a running web process as the page does (a multipart POST with the
session cookie and a CSRF token), for the tests over real processes."""

from __future__ import annotations

import json
import secrets
from email.message import Message
from urllib.error import HTTPError
from urllib.request import Request, urlopen


def upload_file(port: int, session_key: str, room: str, name: str, data: bytes) -> tuple[int, dict]:
    """POST ``data`` as ``name`` to the room's upload endpoint; (status, JSON answer)."""
    token = secrets.token_hex(16)  # a CSRF secret: the cookie and the header agree on it
    boundary = "----upload" + secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = Request(
        f"http://127.0.0.1:{port}/rooms/{room}/attachments/",
        data=body,
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": f"sessionid={session_key}; csrftoken={token}",
            "X-CSRFToken": token,
        },
    )
    try:
        with urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def get(port: int, session_key: str | None, path: str) -> tuple[int, bytes, Message]:
    """GET ``path``, following redirects; (status, body, headers: case-insensitive)."""
    headers = {"Cookie": f"sessionid={session_key}"} if session_key else {}
    request = Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, response.read(), response.headers
    except HTTPError as error:
        return error.code, error.read(), error.headers
