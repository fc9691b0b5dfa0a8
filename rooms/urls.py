from django.urls import path

from messaging import views as messaging_views
from rooms import details_views, notify_views, views

urlpatterns = [
    path("", views.room_list, name="room-list"),
    path("rooms/new/", views.room_create, name="room-create"),
    path("direct/new/", views.direct_new, name="direct-new"),
    path("rooms/<slug:slug>/", views.room_detail, name="room-detail"),
    path("rooms/<slug:slug>/details/", details_views.room_details, name="room-details"),
    path("rooms/<slug:slug>/join/", views.room_join, name="room-join"),
    path("rooms/<slug:slug>/leave/", views.room_leave, name="room-leave"),
    path("rooms/<slug:slug>/invite/", views.room_invite, name="room-invite"),
    path("rooms/<slug:slug>/messages/", messaging_views.history, name="room-messages"),
    path("rooms/<slug:slug>/watch/", views.room_watch, name="room-watch"),
    path("rooms/<slug:slug>/notifications/", notify_views.room_notify, name="room-notify"),
    path("notifications/settings/", notify_views.notification_settings, name="notification-settings"),
    path("rooms/<slug:slug>/participate/", views.room_participate, name="room-participate"),
    path("rooms/<slug:slug>/messages/<int:seq>/report/", views.message_report, name="message-report"),
    # Moderation: the page, then one POST endpoint per act.
    path("rooms/<slug:slug>/moderation/", views.room_moderation, name="room-moderation"),
    *(
        path(f"rooms/<slug:slug>/moderation/{act}/", views.room_member_act, {"act": act}, name=f"room-{act}")
        for act in ("promote", "demote", "mute", "unmute", "ban", "unban", "remove")
    ),
    path("rooms/<slug:slug>/moderation/lock/", views.room_lock, name="room-lock"),
    path("rooms/<slug:slug>/moderation/unlock/", views.room_unlock, name="room-unlock"),
    path("rooms/<slug:slug>/moderation/slow-mode/", views.room_slow_mode, name="room-slow-mode"),
    path("rooms/<slug:slug>/moderation/rename/", views.room_rename, name="room-rename"),
    path("rooms/<slug:slug>/moderation/topic/", views.room_topic, name="room-topic"),
    path("rooms/<slug:slug>/moderation/archive/", views.room_archive, name="room-archive"),
    path("rooms/<slug:slug>/moderation/unarchive/", views.room_unarchive, name="room-unarchive"),
    path("rooms/<slug:slug>/moderation/delete/", views.room_delete, name="room-delete"),
    path("rooms/<slug:slug>/moderation/messages/<int:seq>/hide/", views.room_message_hide, name="room-message-hide"),
    *(
        path(
            f"rooms/<slug:slug>/moderation/reports/<int:report_id>/{act}/",
            views.room_report_act,
            {"act": act},
            name=f"report-{act}",
        )
        for act in ("resolve", "dismiss", "hide")
    ),
]
