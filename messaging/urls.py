from django.urls import path

from messaging import views

urlpatterns = [
    path("notifications/", views.notifications, name="notifications"),
    path("search/", views.search, name="search"),
    path("rooms/<slug:slug>/top/", views.top_clapped, name="room-top"),
    path("rooms/<slug:slug>/claps/", views.claps, name="room-claps"),
]
