"""Incoming webhooks: ``POST /api/v1/hooks/{secret}`` posts to one room as its bot.

The body is Slack's shape, ``{"text": "..."}`` (so that existing senders work), or the API's,
``{"body": "..."}``. The message takes the API's publish path (api.publishing, then
messaging.posting): the bot's membership, the room's lock and slow mode, the limits. An
unknown or revoked secret answers 404; each webhook's requests count against
``API_RATE_LIMIT`` as a token's do.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja import Router

from api import schemas
from api.auth import check_rate
from api.errors import ApiError
from api.models import IncomingWebhook
from api.publishing import publish
from api.tokens import TOUCH_INTERVAL, Grant, secret_hash

router = Router(auth=None, tags=["incoming webhooks"])

ERRORS = {code: schemas.Error for code in (400, 403, 404, 409, 413, 429, 503)}


@router.post(
    "/hooks/{secret}",
    response={201: schemas.Message, 200: schemas.Message, **ERRORS},
    exclude_none=True,
    summary='Post to the webhook\'s room as its bot ({"text"} as Slack\'s, or {"body"})',
)
async def hook_post(request: HttpRequest, secret: str, payload: schemas.WebhookIn):
    hook = (
        await IncomingWebhook.objects.select_related("bot__user", "room")
        .filter(hash=secret_hash(secret), revoked_at__isnull=True)
        .afirst()
    )
    if hook is None or not hook.bot.user.is_active:
        raise ApiError("not_found", "No such webhook (or it was revoked).")
    await check_rate("webhook", hook.pk)
    text = payload.text if payload.text is not None else payload.body
    if text is None:
        raise ApiError("bad_request", 'Send {"text": "..."} (Slack\'s shape) or {"body": "..."}.')
    slug = hook.room.slug
    grant = Grant(
        token_id=0,
        user_id=hook.bot.user_id,
        username=hook.bot.user.get_username(),
        bot=True,
        scopes=frozenset({"publish"}),
        room_slugs=frozenset({slug}),
    )
    published = await publish(grant=grant, slug=slug, body=text)
    now = timezone.now()
    if hook.last_used_at is None or now - hook.last_used_at >= TOUCH_INTERVAL:
        await IncomingWebhook.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_INTERVAL), pk=hook.pk
        ).aupdate(last_used_at=now)
    return (201 if published.created else 200), published.message
