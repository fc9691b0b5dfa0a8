from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate

from messaging.search_index import sqlite_search_index_ensure


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from messaging.events import session_logged_out

        user_logged_out.connect(session_logged_out, dispatch_uid="messaging.session_logged_out")
        post_migrate.connect(search_index_after_migrate, sender=self, dispatch_uid="messaging.search_index")


def search_index_after_migrate(*, using: str, **kwargs) -> None:
    """SQLite's FTS5 triggers are lost when SQLite's schema editor rebuilds the messages table:
    put them back after every migrate (messaging/search_index.py)."""
    sqlite_search_index_ensure(connections[using], create=False)
