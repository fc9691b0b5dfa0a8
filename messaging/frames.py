"""Reading client frames: each field checked, a clear `error` frame for anything wrong."""

from __future__ import annotations

import re
import secrets
import time
import uuid

from django.conf import settings

# The frames a client may send (docs/protocol.md): the consumer has one handler for each
# (``handle_<type>``, messaging.realtime.consumers.FRAME_HANDLERS is built from this list), and the
# metrics count each by name (messaging.metrics.FRAMES_RECEIVED).
FRAME_TYPES = (
    "subscribe",
    "unsubscribe",
    "send",
    "clap",
    "typing",
    "read",
    "edit",
    "delete",
    "ping",
    "remove_preview",
    "react",
    "pin",
)

# JSON numbers a client may send as seq, since or rev: below 2**53, exact in every client.
MAX_INT = 2**53


# A frame's `ref` is copied into the answer: a string or a number, this long at most.
REF_MAX_LENGTH = 64
REF_RULE = f"`ref` must be a string or a number of at most {REF_MAX_LENGTH} characters."


class ClientError(Exception):
    def __init__(self, code: str, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


def required_str(frame: dict, key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise ClientError("bad_request", f"`{key}` must be a non-empty string.")
    return value


def optional_int(frame: dict, key: str) -> int | None:
    value = frame.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INT:
        raise ClientError("bad_request", f"`{key}` must be null or a non-negative integer.")
    return value


def required_seq(frame: dict) -> int:
    value = optional_int(frame, "seq")
    if value is None or value < 1:
        raise ClientError("bad_request", "`seq` must be a positive integer.")
    return value


def optional_seq(frame: dict, key: str) -> int | None:
    """A message's seq, or None when the frame does not have ``key`` (or has null)."""
    value = frame.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < MAX_INT:
        raise ClientError("bad_request", f"`{key}` must be a message's seq: a positive integer.")
    return value


def optional_bool(frame: dict, key: str) -> bool:
    """A flag: absent (or null) is False."""
    value = frame.get(key)
    if value is None:
        return False
    return required_bool(frame, key)


def required_bool(frame: dict, key: str) -> bool:
    value = frame.get(key)
    if not isinstance(value, bool):
        raise ClientError("bad_request", f"`{key}` must be true or false.")
    return value


# A UUID as clients write it (crypto.randomUUID()): it is its own canonical form.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def client_id(frame: dict) -> str:
    """The frame's ``client_id``, in the canonical form of a UUID (lower case, with hyphens)."""
    raw = required_str(frame, "client_id")
    if CANONICAL_UUID.fullmatch(raw):
        return raw  # what str(uuid.UUID(raw)) would give, without making the UUID
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ClientError("bad_request", "`client_id` must be a UUID.") from None


def client_id_time(client_id: str) -> float | None:
    """When a UUIDv7 ``client_id`` (RFC 9562, as the browser client makes them) says it was made,
    in Unix seconds by the client's clock; None for a UUID of another version. ``client_id`` is in
    canonical form (``client_id`` above)."""
    if len(client_id) != 36 or client_id[14] != "7":
        return None
    return int(client_id[:8] + client_id[9:13], 16) / 1000


def uuid7(at: float | None = None) -> str:
    """A UUIDv7 made at ``at`` (Unix seconds; now by default), as the browser client makes its
    client_ids (static/js/room-stream.js): the benchmark's clients and the tests send these."""
    ms = int((time.time() if at is None else at) * 1000) & (2**48 - 1)
    value = (ms << 80) | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # the version
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the variant (RFC 9562)
    return str(uuid.UUID(int=value))


def body(frame: dict, *, allow_empty: bool = False) -> str:
    """The message's text; empty only when ``allow_empty`` (a message with attachments)."""
    text = frame.get("body")
    if not isinstance(text, str):
        raise ClientError("bad_request", "`body` must be a string.")
    text = text.strip()
    if not text and not allow_empty:
        raise ClientError("bad_request", "The message is empty.")
    if len(text) > settings.MESSAGE_MAX_LENGTH:
        raise ClientError("too_large", f"A message has at most {settings.MESSAGE_MAX_LENGTH} characters.")
    if "\x00" in text:
        raise ClientError("bad_request", "The message contains a NUL character.")
    return text


def attachment_ids(frame: dict) -> list[str]:
    """The uploads a ``send`` names (``attachments``: their ids, docs/protocol.md); [] when none."""
    value = frame.get("attachments")
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientError("bad_request", "`attachments` must be a list of attachment ids.")
    if len(value) > settings.ATTACHMENTS_PER_MESSAGE:
        raise ClientError(
            "too_many_attachments", f"A message has at most {settings.ATTACHMENTS_PER_MESSAGE} attachments."
        )
    try:
        return [str(uuid.UUID(item)) for item in value]
    except (TypeError, ValueError, AttributeError):
        raise ClientError("attachment_invalid", "`attachments` must be a list of attachment ids.") from None


def valid_ref(ref: object) -> bool:
    """Whether ``ref`` (None: the frame has none) may be copied into the answer as it is. A
    nested one could be parsed yet not encoded back (orjson writes 254 levels at most)."""
    if ref is None:
        return True
    if isinstance(ref, str):
        return len(ref) <= REF_MAX_LENGTH
    if isinstance(ref, bool) or not isinstance(ref, int | float):
        return False
    return len(repr(ref)) <= REF_MAX_LENGTH
