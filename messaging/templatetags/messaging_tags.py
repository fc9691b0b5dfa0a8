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
