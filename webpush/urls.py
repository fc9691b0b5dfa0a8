from django.urls import path

from webpush import views

urlpatterns = [
    path("manifest.webmanifest", views.manifest, name="manifest"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("offline/", views.offline, name="offline"),
    path("push/subscribe/", views.subscribe, name="push-subscribe"),
    path("push/unsubscribe/", views.unsubscribe, name="push-unsubscribe"),
]
