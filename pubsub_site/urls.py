from django.contrib import admin
from django.urls import include, path, re_path

from accounts.views import media
from pubsub_site import live_status, views

admin.site.site_header = "pubsub moderation"
admin.site.site_title = "pubsub moderation"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/live-status/", admin.site.admin_view(live_status.live_status), name="admin-live-status"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("", include("api.urls")),
    re_path(r"^media/(?P<path>.+)$", media, name="media"),
    path("", include("webpush.urls")),
    path("", include("attachments.urls")),
    path("", include("messaging.urls")),
    path("", include("rooms.urls")),
    path("", include("outgoing_webhooks.urls")),
]
