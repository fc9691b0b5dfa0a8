from django.urls import path

from messaging import thread_views, views

urlpatterns = [
    path("notifications/", views.notifications, name="notifications"),
    path("search/", views.search, name="search"),
    path("rooms/<slug:slug>/top/", views.top_clapped, name="room-top"),
    path("rooms/<slug:slug>/claps/", views.claps, name="room-claps"),
    path("rooms/<slug:slug>/threads/", thread_views.threads_list, name="room-threads"),
    path("rooms/<slug:slug>/threads/<int:seq>/follow/", thread_views.thread_follow, name="thread-follow"),
    path("rooms/<slug:slug>/threads/<int:seq>/read/", thread_views.thread_read, name="thread-read"),
]
