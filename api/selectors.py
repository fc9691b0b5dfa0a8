"""Reads of tokens, bots and webhooks with their permission checks: a user sees their own
tokens; a room's moderators its bots, the bots' tokens and its webhooks."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404

from api.models import ApiToken, BotAccount, IncomingWebhook
from rooms.models import Room

ID_MAX = 2**63 - 1  # a database id (bigint); a larger number in a URL names nothing


def _checked_id(value: int) -> int:
    if not 0 < value <= ID_MAX:
        raise Http404("No such object.")
    return value


def tokens_of_user(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).prefetch_related("rooms")


def token_get_for_owner(*, token_id: int, user: AbstractBaseUser) -> ApiToken:
    token = ApiToken.objects.filter(pk=_checked_id(token_id), user=user).first()
    if token is None:
        raise Http404("No such token.")
    return token


def bots_of_room(*, room: Room) -> QuerySet[BotAccount]:
    return BotAccount.objects.filter(room=room).select_related("user").order_by("user__username")


def bot_get_for_room(*, room: Room, bot_user_id: int) -> BotAccount:
    bot = BotAccount.objects.filter(room=room, user_id=_checked_id(bot_user_id)).select_related("user").first()
    if bot is None:
        raise Http404("No such bot.")
    return bot


def bot_token_get_for_room(*, room: Room, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(pk=_checked_id(token_id), user__bot_account__room=room).first()
    if token is None:
        raise Http404("No such token.")
    return token


def bot_tokens_of_room(*, room: Room) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user__bot_account__room=room).select_related("user")


def webhooks_of_room(*, room: Room) -> QuerySet[IncomingWebhook]:
    return IncomingWebhook.objects.filter(room=room).select_related("bot__user")


def webhook_get_for_room(*, room: Room, hook_id: int) -> IncomingWebhook:
    hook = IncomingWebhook.objects.filter(room=room, pk=_checked_id(hook_id)).first()
    if hook is None:
        raise Http404("No such webhook.")
    return hook


def user_is_bot(*, user_id: int) -> bool:
    return BotAccount.objects.filter(user_id=user_id).exists()
