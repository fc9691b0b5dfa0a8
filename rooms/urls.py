from django.urls import path

from messaging import views as messaging_views
from rooms import views

urlpatterns = [
    path("", views.room_list, name="room-list"),
    path("rooms/new/", views.room_create, name="room-create"),
    path("rooms/<slug:slug>/", views.room_detail, name="room-detail"),
    path("rooms/<slug:slug>/join/", views.room_join, name="room-join"),
    path("rooms/<slug:slug>/leave/", views.room_leave, name="room-leave"),
    path("rooms/<slug:slug>/invite/", views.room_invite, name="room-invite"),
    path("rooms/<slug:slug>/messages/", messaging_views.history, name="room-messages"),
]
