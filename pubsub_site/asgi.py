"""ASGI entry point: HTTP through Django, WebSocket through Channels."""

import asyncio
import gc
import os
import weakref

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pubsub_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from messaging.routing import websocket_urlpatterns  # noqa: E402
from messaging.sockets import daphne_protocol, send_close_below_autobahn  # noqa: E402
from pubsub_site.wsauth import WebSocketAuthMiddleware  # noqa: E402

TRY_AGAIN_LATER = 1013  # RFC 6455 close code registry: the server is overloaded


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
    """At most `limit` WebSocket handshakes at work at once in this process; the others
    wait their turn, for up to `wait` seconds, before any database work.

    In a reconnect storm every handshake costs a database hop and a few Redis calls; all at
    once they share the process's one core and every one of them takes the time of all
    (under daphne they passed its 5 s handshake timeout and nobody got in). Taken a few at
    a time each finishes in milliseconds and the queue drains in order. A handshake
    that waited `wait` seconds in vain is accepted and closed at once with 1013 (Try
    Again Later): the client reconnects after its backoff, as after any close. (Not
    403: the contract keeps that for "not signed in" and "foreign origin", which a
    client must not retry.) The consumer calls scope["handshake_done"] once it has
    accepted or refused.
    """

    def __init__(self, app, limit: int, wait: float):
        self.app = app
        self.limit = limit
        self.wait = wait
        self.slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket" or self.limit <= 0:
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        slots = self.slots.get(loop)
        if slots is None:
            slots = self.slots[loop] = asyncio.Semaphore(self.limit)
        try:
            await asyncio.wait_for(slots.acquire(), self.wait)
        except TimeoutError:
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            if not send_close_below_autobahn(daphne_protocol(send), TRY_AGAIN_LATER):
                await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
            return None
        released = False

        def handshake_done() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        try:
            return await self.app(dict(scope, handshake_done=handshake_done), receive, send)
        finally:
            handshake_done()


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": HandshakeLimit(
            BrowserOriginValidator(WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns)), settings.ALLOWED_HOSTS),
            settings.WS_HANDSHAKE_LIMIT,
            settings.WS_HANDSHAKE_WAIT,
        ),
    }
)

# What loading Django and the project made lives as long as the process: out of the cyclic
# collector's sight, so that its full collections under load do not walk it every time.
gc.freeze()
