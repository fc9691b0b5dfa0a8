from django.urls import path

from api import views
from api.endpoints import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("accounts/tokens/", views.tokens, name="api-tokens"),
    path("accounts/tokens/<int:token_id>/revoke/", views.token_revoke, name="api-token-revoke"),
    path("rooms/<slug:slug>/integrations/", views.integrations, name="room-integrations"),
    path("rooms/<slug:slug>/integrations/bots/", views.bot_new, name="room-bot-new"),
    path(
        "rooms/<slug:slug>/integrations/bots/<int:bot_user_id>/tokens/",
        views.bot_token_new,
        name="room-bot-token-new",
    ),
    path(
        "rooms/<slug:slug>/integrations/tokens/<int:token_id>/revoke/",
        views.bot_token_revoke,
        name="room-bot-token-revoke",
    ),
    path("rooms/<slug:slug>/integrations/webhooks/", views.webhook_new, name="room-webhook-new"),
    path(
        "rooms/<slug:slug>/integrations/webhooks/<int:hook_id>/revoke/",
        views.webhook_revoke,
        name="room-webhook-revoke",
    ),
]
