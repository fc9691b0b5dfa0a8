"""API tokens: made, recognised, and what a recognised one grants.

A token is ``psk_`` and 43 URL-safe characters (256 random bits). The database keeps its
SHA-256 (``ApiToken.hash``), so a token is found by one indexed lookup of its hash; a
revoked, expired or unknown token, or one of an inactive user, is not recognised. The
token's last use is written at most once a minute (``TOUCH_INTERVAL``), by a conditional
UPDATE: not a write per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from api.models import ApiToken

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
    """``token_grant`` from async code (the API's views, the socket handshake)."""
    if not looks_like_token(secret):
        return None
    token = await _lookup().filter(hash=secret_hash(secret)).afirst()
    if not _found(token):
        return None
    slugs = None if token.all_rooms else [slug async for slug in token.rooms.values_list("slug", flat=True)]
    now = timezone.now()
    if _due(token, now):
        await _stale(token, now).aupdate(last_used_at=now)
    return _grant(token, slugs)


def _due(token: ApiToken, now) -> bool:
    return token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL


def _stale(token: ApiToken, now):
    """The token's row unless another request wrote its last use within the interval."""
    return ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_INTERVAL), pk=token.pk
    )


def token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if _due(token, now):
        _stale(token, now).update(last_used_at=now)
