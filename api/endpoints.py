"""The REST API under /api/v1 (django-ninja; docs/api.md says why): the routes, thin.

Each route checks the token's scope for the room, reads the room's access the way the pages
(reads: rooms.selectors) or a socket (writes: rooms.services.aroom_access_for_subscriber) do,
and calls the service a socket frame calls. A private room or conversation the user may not
read answers 404, as the pages do; a room outside the token's scope 403. Errors have one
shape (api.errors). Writes run on the event loop, as a socket's; reads of the database go
through Django's thread.
"""

from __future__ import annotations

import orjson
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as SchemaError
from ninja.parser import Parser
from ninja.renderers import BaseRenderer
from redis.exceptions import RedisError

from api import schemas
from api.auth import TokenAuth
from api.errors import ApiError, error_response, handle
from api.incoming import router as incoming_router
from api.publishing import check_slug, publish, room_access
from api.tokens import Grant
from messaging import frames, moderation
from messaging.frames import MAX_INT
from messaging.posting import check_action_limit, check_may_post
from messaging.selectors import HISTORY_MAX_LIMIT, message_get, message_history, room_counters
from messaging.services import ActionRefused, NotTheAuthor, message_clap, message_delete, message_edit
from protocol.wire import message_wire
from rooms.models import Room
from rooms.selectors import room_get_for_reader, room_ids_readable_by


class StrictJsonParser(Parser):
    """Request bodies read by orjson: strict UTF-8 (a lone surrogate escape such as "\\udb1c",
    which no message could store, is a 400, not a crash further down)."""

    def parse_body(self, request: HttpRequest):
        return orjson.loads(request.body)


class FastJsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data, *, response_status: int) -> bytes:
        return orjson.dumps(data)


ERRORS = {code: schemas.Error for code in (400, 401, 403, 404, 429, 503)}

api = NinjaAPI(
    title="pubsub API",
    version="1",
    description="Publish to and read the site's rooms from programs. Authenticate with `Authorization: Bearer psk_…` "
    "(a token from your account's settings). See docs/api.md.",
    auth=TokenAuth(),
    urls_namespace="api-v1",
    openapi_url="/schema",
    docs_url="/docs",
    parser=StrictJsonParser(),
    renderer=FastJsonRenderer(),
)
api.add_router("", incoming_router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, error: ApiError) -> HttpResponse:
    return error_response(error)


@api.exception_handler(ActionRefused)
def _refused(request: HttpRequest, error: ActionRefused) -> HttpResponse:
    return handle(request, error)


@api.exception_handler(SchemaError)
def _invalid(request: HttpRequest, error: SchemaError) -> HttpResponse:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', 'invalid')}"
        for problem in error.errors[:5]
    )
    return error_response(ApiError("bad_request", problems or "The request is not valid."))


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    response = error_response(ApiError("unauthorized", "A valid token is needed: `Authorization: Bearer psk_…`."))
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    codes = {404: "not_found", 401: "unauthorized", 403: "forbidden", 413: "too_large"}
    code = codes.get(error.status_code, "bad_request")
    return error_response(ApiError(code, str(error), status=error.status_code))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, error: Http404) -> HttpResponse:
    return error_response(ApiError("not_found", str(error) or "Not found."))


@api.exception_handler(RedisError)
@api.exception_handler(DatabaseError)
def _unavailable(request: HttpRequest, error: Exception) -> HttpResponse:
    return error_response(ApiError("unavailable", "A backing service failed; retry."))


def _grant(request: HttpRequest) -> Grant:
    return request.auth


# --- Rooms and history ----------------------------------------------------------


def _rooms(grant: Grant) -> list[dict]:
    user = get_user_model()(pk=grant.user_id)
    rooms = (
        Room.objects.filter(pk__in=room_ids_readable_by(user=user))
        .order_by("name")
        .only("slug", "name", "topic", "kind", "visibility")
    )
    if grant.room_slugs is not None:
        rooms = rooms.filter(slug__in=grant.room_slugs)
    return [
        {
            "slug": room.slug,
            "name": room.name,
            "topic": room.topic,
            "kind": "direct" if room.is_direct else room.visibility,
            "seq": room_counters(room_id=room.pk)[0],
        }
        for room in rooms
    ]


@api.get("/rooms", response={200: schemas.RoomsOut, **ERRORS}, summary="The rooms the token may read")
async def rooms_list(request: HttpRequest):
    grant = _grant(request)
    if "read" not in grant.scopes:
        raise ApiError("forbidden", "This token does not have the `read` scope.")
    return {"rooms": await database_sync_to_async(_rooms)(grant)}


class HistoryQuery(Schema):
    after: int | None = schemas.Field(None, ge=0, lt=MAX_INT, description="Messages with seq > after, oldest first.")
    before: int | None = schemas.Field(None, ge=1, lt=MAX_INT, description="The newest messages with seq < before.")
    limit: int = schemas.Field(50, ge=1, le=HISTORY_MAX_LIMIT)


def _readable_room(grant: Grant, slug: str) -> Room:
    """The room, when the grant's user may read it (the pages' rule) and the token may: 404, 403."""
    check_slug(slug)
    user = get_user_model().objects.filter(pk=grant.user_id).first()
    if user is None:
        raise ApiError("unauthorized", "The token's user is gone.")
    room, _ = room_get_for_reader(slug=slug, user=user)
    if not grant.allows_read(slug):
        raise ApiError("forbidden", "This token may not read this room.")
    return room


@api.get(
    "/rooms/{slug}/messages",
    response={200: schemas.MessagesOut, **ERRORS},
    exclude_none=True,
    summary="A page of a room's messages, by seq",
)
async def messages_list(request: HttpRequest, slug: str, query: Query[HistoryQuery]):
    if query.after is not None and query.before is not None:
        raise ApiError("bad_request", "Give `after` or `before`, not both.")
    return await database_sync_to_async(_history)(_grant(request), slug, query)


def _history(grant: Grant, slug: str, query: HistoryQuery) -> dict:
    room = _readable_room(grant, slug)
    page = message_history(room=room, after=query.after, before=query.before, limit=query.limit)
    return {"messages": page.messages, "has_more": page.has_more}


# --- Publishing -------------------------------------------------------------------


@api.post(
    "/rooms/{slug}/messages",
    response={201: schemas.Message, 200: schemas.Message, 409: schemas.Error, 413: schemas.Error, **ERRORS},
    exclude_none=True,
    summary="Publish a message (a retry with the same idempotency_key answers 200 with the same seq)",
)
async def messages_publish(request: HttpRequest, slug: str, payload: schemas.PublishIn):
    published = await publish(
        grant=_grant(request),
        slug=slug,
        body=payload.body,
        reply_to=payload.reply_to,
        idempotency_key=payload.idempotency_key,
    )
    return (201 if published.created else 200), published.message


@api.post(
    "/messages/batch",
    response={200: schemas.BatchOut, **ERRORS},
    exclude_none=True,
    summary="Publish many messages, to one room or many; each item has its own result",
)
async def messages_batch(request: HttpRequest, payload: schemas.BatchIn):
    grant = _grant(request)
    results = []
    accesses = {}
    for item in payload.messages:
        try:
            access = accesses.get(item.room)
            if access is None and grant.allows_publish(item.room):
                access = accesses[item.room] = await room_access(
                    slug=item.room, user_id=grant.user_id, username=grant.username
                )
            published = await publish(
                grant=grant,
                slug=item.room,
                body=item.body,
                reply_to=item.reply_to,
                idempotency_key=item.idempotency_key,
                access=access,
            )
        except ApiError as error:
            results.append({"status": error.status, "error": error.body()["error"]})
        else:
            results.append({"status": 201 if published.created else 200, "message": published.message})
    return {"results": results}


# --- Edit, delete, clap -----------------------------------------------------------


async def _writable(grant: Grant, slug: str):
    if not grant.allows_publish(slug):
        raise ApiError("forbidden", "This token may not write to this room.")
    return await room_access(slug=slug, user_id=grant.user_id, username=grant.username)


async def _message(access, seq: int) -> dict:
    found = await database_sync_to_async(message_get)(room_id=access.room_id, seq=seq)
    if found is None:
        raise ApiError("not_found", "No such message.")
    record, state = found
    return message_wire(record, room=access.slug, state=state)


@api.patch(
    "/rooms/{slug}/messages/{seq}",
    response={200: schemas.Message, 409: schemas.Error, 413: schemas.Error, **ERRORS},
    exclude_none=True,
    summary="Edit your message",
)
async def messages_edit(request: HttpRequest, slug: str, seq: int, payload: schemas.EditIn):
    grant = _grant(request)
    _check_seq(seq)
    try:
        body = frames.body({"body": payload.body})
    except frames.ClientError as refused:
        raise ApiError.of(refused) from None
    access = await _writable(grant, slug)
    check_may_post(access)  # an edit is new content: the same checks as a send
    await check_action_limit(action="edit", room_id=access.room_id, user_id=grant.user_id)
    await message_edit(room_id=access.room_id, room_slug=access.slug, seq=seq, user_id=grant.user_id, body=body)
    return 200, await _message(access, seq)


@api.delete(
    "/rooms/{slug}/messages/{seq}",
    response={204: None, **ERRORS},
    summary="Delete your message (a moderator: anyone's)",
)
async def messages_delete(request: HttpRequest, slug: str, seq: int):
    grant = _grant(request)
    _check_seq(seq)
    access = await _writable(grant, slug)
    await check_action_limit(action="edit", room_id=access.room_id, user_id=grant.user_id)
    try:
        await message_delete(room_id=access.room_id, room_slug=access.slug, seq=seq, user_id=grant.user_id)
    except NotTheAuthor:
        if not access.can_moderate:
            raise
        try:
            await database_sync_to_async(moderation.room_message_hide_by_ids)(
                room_id=access.room_id, actor_id=grant.user_id, seq=seq
            )
        except PermissionDenied as refused:
            raise ApiError("forbidden", str(refused)) from None
        except ValidationError as refused:
            raise ApiError("not_found", " ".join(refused.messages)) from None
    return 204, None


@api.post(
    "/rooms/{slug}/messages/{seq}/claps",
    response={200: schemas.ClapsOut, **ERRORS},
    summary="Clap a message (up to the cap per user)",
)
async def messages_clap(request: HttpRequest, slug: str, seq: int, payload: schemas.ClapIn | None = None):
    grant = _grant(request)
    _check_seq(seq)
    access = await _writable(grant, slug)
    await check_action_limit(action="clap", room_id=access.room_id, user_id=grant.user_id)
    result = await message_clap(
        room_id=access.room_id,
        room_slug=access.slug,
        seq=seq,
        user_id=grant.user_id,
        username=grant.username,
        count=payload.count if payload is not None else 1,
    )
    return 200, {"seq": seq, "total": result.total, "user_total": result.user_total, "rev": result.rev}


def _check_seq(seq: int) -> None:
    if not 1 <= seq < MAX_INT:
        raise ApiError("bad_request", "`seq` must be a message's seq: a positive integer.")
