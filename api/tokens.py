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
from django.db import connection
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


def _grant(token: ApiToken, *, user_id: int, username: str, bot: bool, room_slugs: list[str] | None) -> Grant:
    return Grant(
        token_id=token.pk,
        user_id=user_id,
        username=username,
        bot=bot,
        scopes=frozenset(token.scopes),
        room_slugs=None if room_slugs is None else frozenset(room_slugs),
    )


def _live(row: tuple | None, now) -> tuple[ApiToken, int, str, bool] | None:
    """``_token_sql``'s row as (the token, its user's id and name, whether a bot), or None when
    the token is unknown, revoked or expired, or its user inactive (``ApiToken.is_active``)."""
    if row is None:
        return None
    (token_id, can_read, can_publish, all_rooms, last_used_at, revoked_at, expires_at,
     user_id, username, user_active, bot) = row  # fmt: skip
    token = ApiToken(
        pk=token_id,
        can_read=bool(can_read),
        can_publish=bool(can_publish),
        all_rooms=bool(all_rooms),
        last_used_at=async_db.row_datetime(last_used_at),
        revoked_at=async_db.row_datetime(revoked_at),
        expires_at=async_db.row_datetime(expires_at),
    )
    if not token.is_active(now) or not user_active:
        return None
    return token, user_id, username, bool(bot)


def token_grant(secret: str) -> Grant | None:
    """The grant of the token ``secret``, or None when it is not a live token: the two
    statements ``atoken_grant`` runs on PostgreSQL's loop, here through Django's connection
    (SQLite, and synchronous callers)."""
    if not looks_like_token(secret):
        return None
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_token_sql(), [secret_hash(secret)])
        live = _live(cursor.fetchone(), now)
        if live is None:
            return None
        token, user_id, username, bot = live
        slugs = None
        if not token.all_rooms:
            cursor.execute(_token_rooms_sql(), [token.pk])
            slugs = [slug for (slug,) in cursor.fetchall()]
    token_touch(token, now)
    return _grant(token, user_id=user_id, username=username, bot=bot, room_slugs=slugs)


async def atoken_grant(secret: str) -> Grant | None:
    """``token_grant`` from async code (the API's views, the socket handshake). On PostgreSQL
    the token is read on the event loop (pubsub_site.async_db), not in Django's one sync
    thread, which every request would queue for; elsewhere it takes that thread."""
    if not looks_like_token(secret):
        return None
    if not async_db.native():
        return await database_sync_to_async(token_grant)(secret)
    now = timezone.now()
    rows = await async_db.fetchall(_token_sql(), [secret_hash(secret)])
    live = _live(rows[0] if rows else None, now)
    if live is None:
        return None
    token, user_id, username, bot = live
    slugs = None
    if not token.all_rooms:
        slugs = [slug for (slug,) in await async_db.fetchall(_token_rooms_sql(), [token.pk])]
    if _due(token, now):
        await _stale(token, now).aupdate(last_used_at=now)
    return _grant(token, user_id=user_id, username=username, bot=bot, room_slugs=slugs)


@functools.cache
def _token_sql() -> str:
    """The token by its hash, with its user and whether the user is a bot (names from the
    models; PostgreSQL and SQLite alike)."""
    q = connection.ops.quote_name
    user_model = get_user_model()
    t = {f.name: q(f.column) for f in ApiToken._meta.concrete_fields}
    u = {f.name: q(f.column) for f in user_model._meta.concrete_fields}
    bot_user = q(BotAccount._meta.get_field("user").column)
    fields = ("id", "can_read", "can_publish", "all_rooms", "last_used_at", "revoked_at", "expires_at")
    return (
        "SELECT "  # noqa: S608 (names from the models, the hash as a parameter)
        + ", ".join(f"t.{t[name]}" for name in fields)
        + f", u.{u['id']}, u.{u[user_model.USERNAME_FIELD]}, u.{u['is_active']}, b.{bot_user} IS NOT NULL"
        f" FROM {q(ApiToken._meta.db_table)} t JOIN {q(user_model._meta.db_table)} u ON u.{u['id']} = t.{t['user']}"
        f" LEFT JOIN {q(BotAccount._meta.db_table)} b ON b.{bot_user} = u.{u['id']} WHERE t.{t['hash']} = %s"
    )


@functools.cache
def _token_rooms_sql() -> str:
    """The slugs of the rooms a token is limited to."""
    q = connection.ops.quote_name
    through = ApiToken.rooms.through._meta
    slug, room_id = q(Room._meta.get_field("slug").column), q(Room._meta.pk.column)
    return (
        f"SELECT r.{slug} FROM {q(through.db_table)} tr JOIN {q(Room._meta.db_table)} r"  # noqa: S608 (model names)
        f" ON r.{room_id} = tr.{q(through.get_field('room').column)}"
        f" WHERE tr.{q(through.get_field('apitoken').column)} = %s"
    )


def _due(token: ApiToken, now) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL


def _stale(token: ApiToken, now):
    """The token's row unless another request wrote its last use within the interval."""
    return ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_INTERVAL), pk=token.pk)


def token_touch(token: ApiToken, now) -> None:
    """Write the token's last use, unless it was written within ``TOUCH_INTERVAL``."""
    if _due(token, now):
        _stale(token, now).update(last_used_at=now)
