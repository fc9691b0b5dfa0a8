"""The HTTP side: publish, batch, history, rooms, edit, delete, clap.

Retries: a request that fails on the network (no answer), or is answered 429 or 503, is sent
again up to ``retries`` times after a backoff with jitter (``Retry-After`` honoured). Publishing
is safe to retry because every message carries an idempotency key (one is made when none is
given): the server answers a retry with the message it already stored, same ``seq``.
Claps are retried only when the connection could not be made (a clap is not idempotent).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from pubsub_client.errors import ApiError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class Client:
    """``Client("https://chat.example.com", "psk_…")``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session or requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "pubsub-client/0.1"})

    # --- requests ---------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        ceiling = self.backoff * 2**attempt
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None, safe: bool = True):
        """The JSON answer (None for 204); raises ApiError. ``safe``: may be sent twice."""
        attempt = 0
        while True:
            try:
                response = self.session.request(method, self._url(path), json=json, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                # Unsafe requests only when the connection was never made (nothing was sent).
                if attempt >= self.retries or not (safe or isinstance(error, requests.ConnectTimeout)):
                    raise
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries and safe:
                retry_after = response.headers.get("Retry-After")
                time.sleep(self._delay(attempt, float(retry_after) if retry_after else None))
                attempt += 1
                continue
            return _answer(response)

    # --- the API ----------------------------------------------------------------

    def rooms(self) -> list[dict]:
        """The rooms the token may read: ``[{"slug", "name", "topic", "kind", "seq"}, ...]``."""
        return self.request("GET", "/rooms")["rooms"]

    def publish(self, room: str, body: str, *, reply_to: int | None = None, idempotency_key: str | None = None) -> dict:
        """Post a message; returns it (with its ``seq``). Retried on network errors with the same
        idempotency key, so it is stored once whatever happens."""
        payload: dict[str, Any] = {"body": body, "idempotency_key": idempotency_key or new_idempotency_key()}
        if reply_to is not None:
            payload["reply_to"] = reply_to
        return self.request("POST", f"/rooms/{_slug(room)}/messages", json=payload)

    def publish_batch(self, messages: list[dict]) -> list[dict]:
        """Post up to 100 messages, to one room or many: ``[{"room", "body", "reply_to"?,
        "idempotency_key"?}, ...]``. Returns one result per message, in order: ``{"status": 201
        or 200, "message": {...}}`` or ``{"status": 4xx, "error": {"code", "detail"}}``."""
        items = [{**m, "idempotency_key": m.get("idempotency_key") or new_idempotency_key()} for m in messages]
        return self.request("POST", "/messages/batch", json={"messages": items})["results"]

    def history(
        self, room: str, *, after: int | None = None, before: int | None = None, limit: int | None = None
    ) -> dict:
        """``{"messages": [...ascending seq...], "has_more": bool}``: after ``after`` (oldest first),
        before ``before`` (the newest of them), or the newest."""
        params = {k: v for k, v in {"after": after, "before": before, "limit": limit}.items() if v is not None}
        return self.request("GET", f"/rooms/{_slug(room)}/messages", params=params)

    def history_after(self, room: str, after: int = 0, *, upto: int | None = None) -> Iterator[dict]:
        """Every message after ``after`` (up to ``upto``), page by page, in seq order."""
        while True:
            page = self.history(room, after=after, limit=200)
            for message in page["messages"]:
                if upto is not None and message["seq"] > upto:
                    return
                yield message
                after = message["seq"]
            if not page["has_more"] or not page["messages"]:
                return

    def edit(self, room: str, seq: int, body: str) -> dict:
        return self.request("PATCH", f"/rooms/{_slug(room)}/messages/{int(seq)}", json={"body": body})

    def delete(self, room: str, seq: int) -> None:
        self.request("DELETE", f"/rooms/{_slug(room)}/messages/{int(seq)}")

    def clap(self, room: str, seq: int, count: int = 1) -> dict:
        return self.request(
            "POST", f"/rooms/{_slug(room)}/messages/{int(seq)}/claps", json={"count": count}, safe=False
        )

    def subscribe(self, room: str, *, since: int | None = None, rev: int | None = None, changes: bool = False):
        """A live subscription (an async iterator of frames); see pubsub_client.subscriber."""
        from pubsub_client.subscriber import Subscription  # noqa: PLC0415 (it imports this module)

        return Subscription(self, room, since=since, rev=rev, changes=changes)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slug(room: str) -> str:
    return quote(room, safe="")


def _answer(response: requests.Response):
    if response.status_code == 204:
        return None
    try:
        data = response.json()
    except ValueError:
        data = None
    if 200 <= response.status_code < 300:
        return data
    error = (data or {}).get("error") if isinstance(data, dict) else None
    retry_after = response.headers.get("Retry-After")
    raise ApiError(
        response.status_code,
        (error or {}).get("code", "http_error"),
        (error or {}).get("detail", response.text[:200] or response.reason or ""),
        float(retry_after) if retry_after else None,
    )
