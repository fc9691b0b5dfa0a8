from django import template
from django.utils.safestring import mark_safe

from messaging.formatting import format_body as render

register = template.Library()


@register.filter
def unread_for(room, unread_by_room: dict) -> int:
    """{{ room|unread_for:unread_by_room }}"""
    if not unread_by_room:
        return 0
    return unread_by_room.get(room.pk, 0)


@register.filter
def format_body(body: str) -> str:
    """A message body as HTML: escaped, with the formatting of messaging/formatting.py
    (links, *bold*, _italic_, `code`, code blocks, > quotes), as static/js/format.js renders it."""
    return mark_safe(render(body))  # noqa: S308 (every piece of user text is escaped by the renderer)


@register.filter
def reacted_by_me(reaction: dict, user_id: int) -> bool:
    """{{ r|reacted_by_me:user.pk }}: whether the user is among the reactors a reaction names."""
    return any(u["id"] == user_id for u in reaction["users"])


@register.filter
def reaction_title(reaction: dict) -> str:
    """Who put the emoji on, as its chip's tooltip says it (static/js/room-reactions.js: reactionTitle)."""
    names = ", ".join(u["username"] for u in reaction["users"])
    more = reaction["count"] - len(reaction["users"])
    if more > 0:
        names += f" and {more} more"
    return f"{names} reacted with {reaction['emoji']}"
