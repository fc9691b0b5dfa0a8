from django.contrib import admin
from django.urls import include, path

from pubsub_site import views

admin.site.site_header = "pubsub moderation"
admin.site.site_title = "pubsub moderation"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("", include("messaging.urls")),
    path("", include("rooms.urls")),
]
