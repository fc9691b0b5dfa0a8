from django.urls import path

from messaging.consumers import RoomsConsumer

websocket_urlpatterns = [
    path("ws/", RoomsConsumer.as_asgi()),
]
