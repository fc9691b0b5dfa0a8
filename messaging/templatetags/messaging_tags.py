from django import template

register = template.Library()


@register.filter
def unread_for(room, unread_by_room: dict) -> int:
    """{{ room|unread_for:unread_by_room }}"""
    if not unread_by_room:
        return 0
    return unread_by_room.get(room.pk, 0)


@register.filter
def linkify_parts(body: str) -> list[tuple[str, str]]:
    """Split a message body into ("text", s) and ("link", url) parts; the template escapes both."""
    from messaging.wire import body_parts

    return body_parts(body)
