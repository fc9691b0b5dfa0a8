from django.urls import path

from messaging.realtime.consumers import RoomsConsumer
from pubsub_site.wsauth import WebSocketAuthMiddleware

# The session, user and memberships go on the consumer's own copy of the scope (innermost),
# which it trims once it has read them: a connection keeps none of them for its life.
websocket_urlpatterns = [
    path("ws/", WebSocketAuthMiddleware(RoomsConsumer.as_asgi())),
]
