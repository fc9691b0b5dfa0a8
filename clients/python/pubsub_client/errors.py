from __future__ import annotations


class PubsubError(Exception):
    """Anything this client raises."""


class ApiError(PubsubError):
    """The API answered with an error: ``status`` (HTTP), ``code`` (the socket contract's codes:
    ``forbidden``, ``not_found``, ``rate_limited``, ``invalid``, ``muted``, ``locked``, ...),
    ``detail`` (human text) and, on 429, ``retry_after`` (seconds)."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


class SubscriptionEnded(PubsubError):
    """The server ended the subscription for good (refused, kicked, token revoked): reconnecting
    would not help. ``code`` is the error code or close reason."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail
