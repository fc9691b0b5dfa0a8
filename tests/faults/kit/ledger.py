"""The ledger of sends: every message a test sends, with the outcome of each attempt at it
(acked, refused, unknown) and its ``seq`` once acked."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

ACKED, REFUSED, UNKNOWN = "acked", "refused", "unknown"


@dataclass
class Send:
    client_id: str
    room: str
    body: str
    attempts: list[str] = field(default_factory=list)  # "acked", "refused:<code>", "unknown"
    seq: int | None = None
    acked_at: float | None = None  # time.monotonic() of the ack

    @property
    def final(self) -> str:
        last = self.attempts[-1] if self.attempts else UNKNOWN
        return last.split(":", 1)[0]


class Ledger:
    def __init__(self) -> None:
        self.sends: dict[str, Send] = {}

    def new(self, room: str, body: str) -> Send:
        send = Send(client_id=str(uuid.uuid4()), room=room, body=body)
        self.sends[send.client_id] = send
        return send

    def of(self, final: str) -> list[Send]:
        return [s for s in self.sends.values() if s.final == final]

    def attempt_counts(self) -> Counter:
        return Counter(a for s in self.sends.values() for a in s.attempts)

    def first_outcomes(self) -> Counter:
        return Counter(s.attempts[0] for s in self.sends.values() if s.attempts)

    def summary(self) -> str:
        finals = Counter(s.final for s in self.sends.values())
        attempts = self.attempt_counts()
        return (
            f"{len(self.sends)} messages: {finals[ACKED]} acked, {finals[REFUSED]} refused, "
            f"{finals[UNKNOWN]} unknown in the end; attempts: "
            + ", ".join(f"{k} {v}" for k, v in sorted(attempts.items()))
        )
