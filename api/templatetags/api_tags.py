"""``is_bot``: whether a user (or a user id) is a bot account, for the BOT badges of the pages."""

from __future__ import annotations

from django import template
from django.core.exceptions import ObjectDoesNotExist

from api.selectors import user_is_bot

register = template.Library()


@register.filter
def is_bot(user) -> bool:
    if isinstance(user, int):
        return user_is_bot(user_id=user)
    try:
        return user.bot_account is not None  # read with the user where the page selected it
    except ObjectDoesNotExist:
        return False
