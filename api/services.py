"""Making and revoking tokens, bots and incoming webhooks. The caller has checked the rights
(a user's own tokens; a room admin's bots and webhooks: api.selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from api.models import ApiToken, BotAccount, IncomingWebhook
from api.tokens import WEBHOOK_SECRET_PREFIX, new_secret, secret_hash
from rooms.models import Membership, Room
from rooms.services import member_updated_tell

PREFIX_LENGTH = 10  # "psk_" and six characters: enough to tell tokens apart, nothing to guess with


@dataclass(frozen=True)
class Made:
    """A token or a webhook just made, with its secret: shown once, never stored."""

    obj: ApiToken | IncomingWebhook
    secret: str


def token_create(
    *,
    user: AbstractBaseUser,
    name: str,
    can_read: bool = True,
    can_publish: bool = True,
    rooms: list[Room] | None = None,
    expires_at: datetime | None = None,
) -> Made:
    """A new token of ``user``; ``rooms`` None: every room the user may use."""
    if not (can_read or can_publish):
        raise ValidationError("A token needs the read scope, the publish scope, or both.")
    secret = new_secret()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:PREFIX_LENGTH],
            hash=secret_hash(secret),
            can_read=can_read,
            can_publish=can_publish,
            all_rooms=rooms is None,
            expires_at=expires_at,
        )
        if rooms:
            token.rooms.set(rooms)
    return Made(token, secret)


def token_revoke(*, token: ApiToken) -> None:
    """Revoked at once: the next request with it is refused (401). Kept for its history."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def bot_create(*, room: Room, created_by: AbstractBaseUser, username: str) -> BotAccount:
    """A bot account for ``room``: a user with no password, a member of the room."""
    user_model = get_user_model()
    user_model.username_validator(username)
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError("That name is taken.")
    with transaction.atomic():
        user = user_model(username=username)
        user.set_unusable_password()
        user.save()
        bot = BotAccount.objects.create(user=user, room=room, created_by=created_by)
        membership = Membership.objects.create(user=user, room=room, role=Membership.Role.MEMBER)
    member_updated_tell(membership, room_slug=room.slug, username=username)
    return bot


def webhook_create(*, bot: BotAccount, created_by: AbstractBaseUser, name: str) -> Made:
    """An incoming webhook posting to the bot's room as the bot; its URL holds the secret."""
    secret = new_secret(WEBHOOK_SECRET_PREFIX)
    hook = IncomingWebhook.objects.create(
        room_id=bot.room_id,
        bot=bot,
        name=name,
        prefix=secret[:PREFIX_LENGTH],
        hash=secret_hash(secret),
        created_by=created_by,
    )
    return Made(hook, secret)


def webhook_revoke(*, hook: IncomingWebhook) -> None:
    IncomingWebhook.objects.filter(pk=hook.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
