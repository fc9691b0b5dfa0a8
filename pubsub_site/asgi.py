"""ASGI entry point: HTTP through Django, WebSocket through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pubsub_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from messaging.routing import websocket_urlpatterns  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Refuse a handshake whose Origin is not one of ALLOWED_HOSTS (403).

    Browsers always send Origin on a WebSocket handshake, so a foreign page cannot
    ride on the session cookie. A handshake without Origin comes from a program
    (the benchmark, another client) that presents its own session cookie.
    """

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


class HandshakeLimit:
    """At most `limit` WebSocket handshakes in progress in this process; past it, refuse at
    once (403), before any database work.

    In a reconnect storm every handshake costs a few queries; queued behind each other
    they pass daphne's 5 s handshake timeout, daphne drops them after the work is done,
    the clients retry, and nobody gets in. Refused early, a client backs off (with jitter)
    and comes back while the admitted ones finish in time. The consumer calls
    scope["handshake_done"] once it has accepted or refused.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit
        self.in_progress = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or self.limit <= 0:
            return await self.app(scope, receive, send)
        if self.in_progress >= self.limit:
            await receive()  # websocket.connect
            await send({"type": "websocket.close"})
            return None
        self.in_progress += 1
        released = False

        def handshake_done() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_progress -= 1

        try:
            return await self.app(dict(scope, handshake_done=handshake_done), receive, send)
        finally:
            handshake_done()


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": HandshakeLimit(
            BrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.ALLOWED_HOSTS),
            settings.WS_HANDSHAKE_LIMIT,
        ),
    }
)
