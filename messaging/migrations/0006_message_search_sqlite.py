"""Full-text search on SQLite (the `make run` default): an FTS5 table of the message bodies,
kept by triggers (messaging/search/index.py), filled from the messages already there.
Nothing on PostgreSQL, which has its tsvector column and GIN index (migration 0003)."""

from django.db import migrations

from messaging.search.index import sqlite_search_index_drop, sqlite_search_index_ensure


def create_index(apps, schema_editor) -> None:
    sqlite_search_index_ensure(schema_editor.connection)


def drop_index(apps, schema_editor) -> None:
    sqlite_search_index_drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0005_message_client_id_per_author"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
