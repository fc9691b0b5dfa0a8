"""The API's request and response shapes (pydantic, through django-ninja): the OpenAPI schema
is made from these. A message is the wire `message` frame without its ``type``
(protocol.wire.message_wire)."""

from __future__ import annotations

from typing import Literal

from ninja import Field, Schema

from messaging.frames import MAX_INT
from messaging.models import CLAP_CAP

Seq = Field(..., ge=1, lt=MAX_INT)


class Author(Schema):
    id: int
    username: str
    bot: bool | None = Field(None, description="Present, and true, only for a bot account.")


class ReplyQuote(Schema):
    seq: int
    author: Author | None = None
    excerpt: str
    deleted: bool


class Message(Schema):
    room: str
    seq: int
    rev: int
    author: Author
    body: str
    client_id: str
    sent_at: str
    claps: int
    edited: bool
    deleted: bool
    reply_to: int | None = None
    reply: ReplyQuote | None = None


class ErrorDetail(Schema):
    code: str = Field(..., description="The WebSocket contract's error codes: bad_request, forbidden, not_found, …")
    detail: str
    retry_after: float | None = None


class Error(Schema):
    error: ErrorDetail


class PublishIn(Schema):
    body: str = Field(..., description="The message text (at most MESSAGE_MAX_LENGTH characters).")
    reply_to: int | None = Field(None, ge=1, lt=MAX_INT, description="The seq of the message this one answers.")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="A retry with the same key (same user, same room) answers the same message, stored once.",
    )


class BatchItemIn(PublishIn):
    room: str = Field(..., min_length=1, max_length=100)


class BatchIn(Schema):
    messages: list[BatchItemIn] = Field(..., min_length=1, max_length=100)


class BatchResult(Schema):
    status: int
    message: Message | None = None
    error: ErrorDetail | None = None


class BatchOut(Schema):
    results: list[BatchResult]


class RoomOut(Schema):
    slug: str
    name: str
    topic: str
    kind: Literal["public", "private", "direct"]
    seq: int


class RoomsOut(Schema):
    rooms: list[RoomOut]


class MessagesOut(Schema):
    messages: list[Message]
    has_more: bool


class EditIn(Schema):
    body: str


class ClapIn(Schema):
    count: int = Field(1, ge=1, le=CLAP_CAP)


class ClapsOut(Schema):
    seq: int
    total: int
    user_total: int
    rev: int


class WebhookIn(Schema):
    """Slack's incoming-webhook shape (``text``) or the API's (``body``)."""

    text: str | None = None
    body: str | None = None
