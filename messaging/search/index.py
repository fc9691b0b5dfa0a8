"""SQLite's full-text index of messages: an FTS5 table kept by triggers (messaging/search/__init__.py reads it).

Guarantee: on SQLite, ``messaging_message_fts`` holds every row of ``messaging_message`` with
its current body. It is an external-content FTS5 table (the bodies are not stored twice)
with the tokenizer ``porter unicode61 remove_diacritics 2``: English stems (``deploying``
finds ``deploy``, as PostgreSQL's ``english`` configuration does) over Unicode words, case
and accents folded. Triggers on insert, on an edit of ``body`` and on delete keep it in step
with every write: the persistence job's inserts and edits, the admin's, a flush.

Migration 0006 creates it; ``sqlite_search_index_ensure`` runs after every ``migrate`` as
well, because SQLite's schema editor rebuilds a table for some changes (a new table, the
rows copied, the old one dropped): the triggers go with the old table, and this puts them
back and rebuilds the index. PostgreSQL has its own index (migration 0003) and nothing here
touches it.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

MESSAGES = "messaging_message"
FTS_TABLE = "messaging_message_fts"
TOKENIZE = "porter unicode61 remove_diacritics 2"  # as in CREATE_TABLE
# Written out (the names are fixed): the messages table, its FTS5 table, three triggers.
TRIGGERS = {
    "messaging_message_fts_insert": (
        'CREATE TRIGGER IF NOT EXISTS "messaging_message_fts_insert" AFTER INSERT ON "messaging_message" BEGIN '
        'INSERT INTO "messaging_message_fts"(rowid, body) VALUES (new.id, new.body); END'
    ),
    "messaging_message_fts_delete": (
        'CREATE TRIGGER IF NOT EXISTS "messaging_message_fts_delete" AFTER DELETE ON "messaging_message" BEGIN '
        'INSERT INTO "messaging_message_fts"("messaging_message_fts", rowid, body) '
        "VALUES ('delete', old.id, old.body); END"
    ),
    "messaging_message_fts_update": (
        'CREATE TRIGGER IF NOT EXISTS "messaging_message_fts_update" AFTER UPDATE OF body ON "messaging_message" '
        'BEGIN INSERT INTO "messaging_message_fts"("messaging_message_fts", rowid, body) '
        "VALUES ('delete', old.id, old.body); "
        'INSERT INTO "messaging_message_fts"(rowid, body) VALUES (new.id, new.body); END'
    ),
}
CREATE_TABLE = (
    'CREATE VIRTUAL TABLE IF NOT EXISTS "messaging_message_fts" USING fts5('
    "body, content='messaging_message', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')"
)
REBUILD = """INSERT INTO "messaging_message_fts"("messaging_message_fts") VALUES ('rebuild')"""


def sqlite_search_index_ensure(connection: BaseDatabaseWrapper, *, create: bool = True) -> bool:
    """Create the FTS5 table and its triggers where any is missing, and then index every
    message again; returns whether anything was missing. ``create=False`` (after a migrate)
    only repairs an index that exists: before migration 0006, or after it was reversed,
    there is none to repair. Nothing on PostgreSQL."""
    if connection.vendor != "sqlite":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        present = {name for (name,) in cursor.fetchall()}
        if MESSAGES not in present:
            return False  # before the messages table exists (an early migration)
        missing = {FTS_TABLE, *TRIGGERS} - present
        if not missing or (FTS_TABLE in missing and not create):
            return False
        cursor.execute(CREATE_TABLE)
        for sql in TRIGGERS.values():
            cursor.execute(sql)
        cursor.execute(REBUILD)
    return True


def sqlite_search_index_drop(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        for name in TRIGGERS:
            cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        cursor.execute(f'DROP TABLE IF EXISTS "{FTS_TABLE}"')
