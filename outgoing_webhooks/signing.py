"""The signature of a delivery, Stripe's scheme: ``X-Pubsub-Signature: t=<unix seconds>,v1=<hex>``.

``v1`` is HMAC-SHA256 of ``f"{t}.{body}"`` under the endpoint's secret. The receiver recomputes
it over the raw body and refuses a timestamp too far from its clock (a replayed request);
docs/api.md, "Outgoing webhooks", shows the check in a few lines of Python.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-Pubsub-Signature"
EVENT_ID_HEADER = "X-Pubsub-Event-Id"
EVENT_TYPE_HEADER = "X-Pubsub-Event-Type"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of a generated secret, as Stripe's)


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_header(*, secret: str, body: bytes, now: float | None = None) -> str:
    return signature(secret=secret, body=body, timestamp=int(time.time() if now is None else now))


def signature_verify(*, secret: str, body: bytes, header: str, tolerance: int = 300, now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret=secret, body=body, timestamp=timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
