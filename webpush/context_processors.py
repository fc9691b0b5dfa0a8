from django.conf import settings
from django.http import HttpRequest


def push(request: HttpRequest) -> dict:
    """The VAPID public key the pages subscribe with; empty when push is off (the pages then
    offer nothing about it)."""
    keys = settings.WEBPUSH_VAPID
    return {"webpush_public_key": keys.public_key if keys is not None else ""}
