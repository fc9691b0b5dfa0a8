"""ASGI entry point: HTTP through Django, WebSocket through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pubsub_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from messaging import metrics  # noqa: E402
from messaging.realtime.drain import lifespan  # noqa: E402
from messaging.realtime.handshakes import HandshakeLimit  # noqa: E402
from messaging.realtime.routing import websocket_urlpatterns  # noqa: E402
from pubsub_site import gc_policy  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Refuse a handshake whose Origin is not one of ALLOWED_HOSTS (403).

    Browsers always send Origin on a WebSocket handshake, so a foreign page cannot
    ride on the session cookie. A handshake without Origin comes from a program
    (the benchmark, another client) that presents its own session cookie.
    """

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        if self.validate_origin(parsed_origin):
            return True
        metrics.handshake_refused("origin")
        return False


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # --lifespan on: at startup, SIGTERM drains the sockets first (messaging.realtime.drain)
        "lifespan": lifespan,
        "websocket": HandshakeLimit(
            BrowserOriginValidator(URLRouter(websocket_urlpatterns), settings.ALLOWED_HOSTS),
            settings.WS_HANDSHAKE_LIMIT,
            settings.WS_HANDSHAKE_WAIT,
        ),
    }
)

# What loading Django and the project made lives as long as the process: out of the cyclic
# collector's sight; and full collections come once an interval (pubsub_site.gc_policy).
gc_policy.install()
