"""API tokens: made, recognised, and what a recognised one grants.

A token is ``psk_`` and 43 URL-safe characters (256 random bits). The database keeps its
SHA-256 (``ApiToken.hash``), so a token is found by one indexed lookup of its hash; a
revoked, expired or unknown token, or one of an inactive user, is not recognised. The
token's last use is written at most once a minute (``TOUCH_INTERVAL``), by a conditional
UPDATE: not a write per request.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from api.models import ApiToken, BotAccount
from pubsub_site import async_db
from rooms.models import Room

TOKEN_PREFIX = "psk_"  # noqa: S105 (a prefix, not a secret)
WEBHOOK_SECRET_PREFIX = "whk_"  # noqa: S105
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Grant:
    """What a request (or a socket) authenticated by a token may do: the socket consumer
    and the API views read only this, never the token row."""

    token_id: int
    user_id: int
    username: str
    bot: bool
    scopes: frozenset[str]
    room_slugs: frozenset[str] | None  # None: every room the user may use

    def allows_read(self, slug: str) -> bool:
        return "read" in self.scopes and self.allows_room(slug)

    def allows_publish(self, slug: str) -> bool:
        return "publish" in self.scopes and self.allows_room(slug)

    def allows_room(self, slug: str) -> bool:
        return self.room_slugs is None or slug in self.room_slugs


def new_secret(prefix: str = TOKEN_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)  # 32 bytes: 43 characters


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and len(value) == len(TOKEN_PREFIX) + 43


def _grant(token: ApiToken, room_slugs: list[str] | None) -> Grant:
    user = token.user
    return Grant(
        token_id=token.pk,
        user_id=user.pk,
        username=user.get_username(),
        bot=hasattr(user, "bot_account"),
        scopes=frozenset(token.scopes),
        room_slugs=None if room_slugs is None else frozenset(room_slugs),
    )


def _found(token: ApiToken | None) -> bool:
    return token is not None and token.is_active() and token.user.is_active


def _lookup():
    return ApiToken.objects.select_related("user", "user__bot_account")


def token_grant(secret: str) -> Grant | None:
    """The grant of the token ``secret``, or None when it is not a live token."""
    if not looks_like_token(secret):
        return None
    token = _lookup().filter(hash=secret_hash(secret)).first()
    if not _found(token):
        return None
    slugs = None if token.all_rooms else list(token.rooms.values_list("slug", flat=True))
    token_touch(token)
    return _grant(token, slugs)


async def atoken_grant(secret: str) -> Grant | None:
    """``token_grant`` from async code (the API's views, the socket handshake). On PostgreSQL
    the token is read on the event loop (pubsub_site.async_db: one query, with its user and
    whether it is a bot), not in Django's one sync thread, which every request would queue
    for; elsewhere it takes that thread."""
    if not looks_like_token(secret):
        return None
    if not async_db.native():
        return await database_sync_to_async(token_grant)(secret)
    rows = await async_db.fetchall(_token_sql(), [secret_hash(secret)])
    if not rows:
        return None
    (token_id, can_read, can_publish, all_rooms, last_used_at, revoked_at, expires_at,
     user_id, username, is_active, bot) = rows[0]  # fmt: skip
    now = timezone.now()
    if revoked_at is not None or (expires_at is not None and expires_at <= now) or not is_active:
        return None
    slugs = None
    if not all_rooms:
        slugs = [slug for (slug,) in await async_db.fetchall(_token_rooms_sql(), [token_id])]
    if last_used_at is None or now - last_used_at >= TOUCH_INTERVAL:
        token = ApiToken(pk=token_id, last_used_at=last_used_at)
        await _stale(token, now).aupdate(last_used_at=now)
    scopes = [scope for scope, on in (("read", can_read), ("publish", can_publish)) if on]
    return Grant(
        token_id=token_id,
        user_id=user_id,
        username=username,
        bot=bot,
        scopes=frozenset(scopes),
        room_slugs=None if slugs is None else frozenset(slugs),
    )


@functools.cache
def _token_sql() -> str:
    """The token by its hash, with its user and whether the user is a bot (names from the models)."""
    user_model = get_user_model()
    t = {f.name: f.column for f in ApiToken._meta.concrete_fields}
    u = {f.name: f.column for f in user_model._meta.concrete_fields}
    fields = ("id", "can_read", "can_publish", "all_rooms", "last_used_at", "revoked_at", "expires_at")
    return (
        "SELECT "
        + ", ".join(f't."{t[name]}"' for name in fields)
        + f', u."{u["id"]}", u."{u[user_model.USERNAME_FIELD]}", u."{u["is_active"]}", b."user_id" IS NOT NULL '
        f'FROM "{ApiToken._meta.db_table}" t JOIN "{user_model._meta.db_table}" u ON u."{u["id"]}" = t."{t["user"]}" '
        f'LEFT JOIN "{BotAccount._meta.db_table}" b ON b."user_id" = u."{u["id"]}" WHERE t."{t["hash"]}" = %s'
    )


@functools.cache
def _token_rooms_sql() -> str:
    through = ApiToken.rooms.through
    room = {f.name: f.column for f in Room._meta.concrete_fields}
    return (
        f'SELECT r."{room["slug"]}" FROM "{through._meta.db_table}" tr '  # noqa: S608 (model names)
        f'JOIN "{Room._meta.db_table}" r ON r."{room["id"]}" = tr."room_id" WHERE tr."apitoken_id" = %s'
    )


def _due(token: ApiToken, now) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL


def _stale(token: ApiToken, now):
    """The token's row unless another request wrote its last use within the interval."""
    return ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_INTERVAL), pk=token.pk)


def token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if _due(token, now):
        _stale(token, now).update(last_used_at=now)
