"""How a person shows in the pages: display name, avatar and current status, read from the
profile that the view selected with the user (``select_related("user__profile")``)."""

from __future__ import annotations

from django import template
from django.core.exceptions import ObjectDoesNotExist

from accounts.models import Profile
from accounts.selectors import avatar_url, current_status

register = template.Library()


def _profile(user) -> Profile | None:
    try:
        return user.profile
    except ObjectDoesNotExist:
        return None


@register.filter
def shown_name(user) -> str:
    """The display name, or the username."""
    profile = _profile(user)
    return (profile.display_name if profile else "") or user.get_username()


@register.filter
def avatar_of(user) -> str:
    """The URL of the avatar, or ""."""
    return avatar_url(_profile(user))


@register.filter
def status_of(user) -> str:
    """The status, unless it expired."""
    return current_status(_profile(user))


@register.filter
def author_name(author: dict, display_names: dict | None) -> str:
    """{{ m.author|author_name:display_names }}: a message author's display name (the page's
    ``display_names``, user id -> name, read with the member list), or their username."""
    return (display_names or {}).get(author.get("id")) or author.get("username", "")
