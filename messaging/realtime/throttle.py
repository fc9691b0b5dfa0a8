"""Per-user limits on the WebSocket, counted in Redis so they hold across web processes.

Sending a message: the limit (``WS_RATE_LIMITS["send"]``, a moving window) and slow mode
(a minimum interval between one member's messages) are checked and counted by the
append script itself (``messaging.store.buffer.APPEND_SCRIPT``), so a send is one Redis call;
``send_limits`` says what that script enforces. The other actions: the `limits` library's
async API (moving window) on the room's Redis server. Both live in messaging.posting, shared
with the HTTP API, and are named here for the consumer.

Limits of one socket (its subscribe frames): ``LocalWindow``, in the socket's own memory.
"""

from __future__ import annotations

import time

from messaging.posting import retry_after, send_limits, window

__all__ = ["LocalWindow", "retry_after", "send_limits"]

# The limits of sends and actions are counted where every poster's are (messaging.posting).
_window = window


class LocalWindow:
    """A moving window kept by one socket in its own memory: no Redis call, nothing shared."""

    __slots__ = ("hits",)

    def __init__(self) -> None:
        # A list, not a deque: every socket has a window from its first subscribe, a deque's
        # first block is 64 slots (624 bytes) and a window holds a few timestamps (56 bytes).
        self.hits: list[float] = []

    def retry_after(self, limit: str) -> float | None:
        """Count one hit under ``limit`` (e.g. "20/10second"); None when allowed, else the
        seconds until it would be (a refused hit is not counted)."""
        amount, window_ms = _window(limit)
        window = window_ms / 1000
        now = time.monotonic()
        if self.hits and self.hits[0] <= now - window:
            self.hits = [hit for hit in self.hits if hit > now - window]
        if len(self.hits) >= amount:
            return max(0.1, round(self.hits[0] + window - now, 2))
        self.hits.append(now)
        return None
