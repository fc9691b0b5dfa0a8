from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save, pre_save

        from messaging.notifications.mentions import notify_mentions
        from messaging.previews import previews_after_batch, previews_after_changes
        from messaging.store import persistence, watermarks
        from messaging.threads.services import thread_follows_after_batch
        from protocol import events
        from rooms import room_settings
        from rooms.models import Room

        user_logged_out.connect(events.session_logged_out, dispatch_uid="messaging.session_logged_out")
        # Open sockets follow a deactivation, a password change and a room made private
        # wherever they are written (protocol.events).
        user_model = get_user_model()
        pre_save.connect(events.user_before_save, sender=user_model, dispatch_uid="messaging.user_before_save")
        post_save.connect(events.user_after_save, sender=user_model, dispatch_uid="messaging.user_after_save")
        pre_save.connect(events.room_before_save, sender=Room, dispatch_uid="messaging.room_before_save")
        post_save.connect(events.room_after_save, sender=Room, dispatch_uid="messaging.room_after_save")
        # The persistence job notifies the mentions of each batch it writes.
        if notify_mentions not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(notify_mentions)
        # ... and queues the link previews of new and edited messages (off the send path).
        if previews_after_batch not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(previews_after_batch)
        if previews_after_changes not in persistence.AFTER_CHANGES:
            persistence.AFTER_CHANGES.append(previews_after_changes)
        # ... and who follows the threads its replies went to.
        if thread_follows_after_batch not in persistence.AFTER_BATCH:
            persistence.AFTER_BATCH.append(thread_follows_after_batch)
        # A deleted room's state in Redis goes after the deletion's commit.
        if watermarks.forget_room not in room_settings.AFTER_DELETE:
            room_settings.AFTER_DELETE.append(watermarks.forget_room)
        post_migrate.connect(search_index_after_migrate, sender=self, dispatch_uid="messaging.search.index")


def search_index_after_migrate(*, using: str, **kwargs) -> None:
    """SQLite's FTS5 triggers are lost when SQLite's schema editor rebuilds the messages table:
    put them back after every migrate (messaging/search/index.py)."""
    # Imported here, not at the top: the package messaging.search imports the models, and this
    # module is imported before the models are ready.
    from messaging.search.index import sqlite_search_index_ensure

    sqlite_search_index_ensure(connections[using], create=False)
