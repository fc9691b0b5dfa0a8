"""SQLite, the `make run` default, as the web process and the worker share it (issue 21).

Guarantee: settings open SQLite in WAL mode with a busy timeout, and every transaction takes
the write lock when it begins (IMMEDIATE): two processes writing at once queue, and neither
fails with "database is locked" (a read that turns into a write in a deferred transaction
did). The test database is a file (`test_<name>`), so the suite's real processes share it.
These run as subprocesses on a SQLite file of their own, whatever database the suite uses.
"""

from __future__ import annotations

import os
import subprocess
import sys

from django.db import ConnectionHandler

from messaging.search.index import sqlite_search_index_ensure
from pubsub_site.tests.deploy.test_settings import ROOT, run_manage

SHOW = (
    "from django.conf import settings; from django.db import connection; d = settings.DATABASES['default']; "
    "o = d['OPTIONS']; c = connection.cursor(); c.execute('PRAGMA journal_mode'); "
    "print(o['transaction_mode'], o['timeout'], c.fetchone()[0], d['TEST']['NAME'])"
)

BOOTSTRAP = "import django, os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'pubsub_site.settings')\n"
BOOTSTRAP += "django.setup()\n"
# One process's share of the work: read a row, then write it, in one transaction, many times.
WRITER = """
import sys
from django.db import connection, transaction
for _ in range(int(sys.argv[-1])):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT n FROM counter WHERE id = 1")
            (n,) = cursor.fetchone()
            cursor.execute("UPDATE counter SET n = %s WHERE id = 1", [n + 1])
"""


def test_it_opens_sqlite_in_wal_mode_with_a_busy_timeout_and_immediate_transactions(tmp_path):
    result = run_manage("shell", "-c", SHOW, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["IMMEDIATE", "20.0", "wal", str(tmp_path / "test_db.sqlite3")]


def test_two_processes_writing_at_once_never_find_the_database_locked(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    setup = "from django.db import connection; c = connection.cursor(); "
    setup += "c.execute('CREATE TABLE counter (id integer primary key, n integer)'); "
    setup += "c.execute('INSERT INTO counter VALUES (1, 0)')"
    assert run_manage("shell", "-c", setup, **env).returncode == 0
    per_process = 150
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_ENV", "DEBUG", "ALLOWED_HOSTS"}}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _bootstrap(WRITER), str(per_process)],
            cwd=ROOT,
            env={**clean, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], "\n".join(errors)
    show = "from django.db import connection; c = connection.cursor(); c.execute('SELECT n FROM counter'); "
    show += "print(c.fetchone()[0])"
    result = run_manage("shell", "-c", show, **env)
    assert result.stdout.split()[-1] == str(2 * per_process)  # and no write was lost


def _bootstrap(code: str) -> str:
    return BOOTSTRAP + code


def test_the_search_index_follows_every_write_and_is_repaired_after_a_table_rebuild(tmp_path, django_db_blocker):
    """On a SQLite database of its own (whatever the suite's database is)."""
    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": tmp_path / "db"}})
    db = handler["default"]
    with django_db_blocker.unblock():
        _check_the_index(db)


def _check_the_index(db) -> None:
    try:
        with db.cursor() as cursor:
            cursor.execute("CREATE TABLE messaging_message (id integer primary key, body text)")
            cursor.execute("INSERT INTO messaging_message VALUES (1, 'deploying on friday')")
            assert sqlite_search_index_ensure(db) is True  # made, and the message already there indexed
            assert sqlite_search_index_ensure(db) is False

            def found(word: str) -> list[int]:
                cursor.execute("SELECT rowid FROM messaging_message_fts WHERE messaging_message_fts MATCH %s", [word])
                return sorted(rowid for (rowid,) in cursor.fetchall())

            assert found("deploy") == [1]
            cursor.execute("INSERT INTO messaging_message VALUES (2, 'a deploy on monday')")
            cursor.execute("UPDATE messaging_message SET body = 'rolled back' WHERE id = 1")
            assert found("deploy") == [2] and found("roll") == [1]
            cursor.execute("DELETE FROM messaging_message WHERE id = 2")
            assert found("deploy") == []

            # SQLite's schema editor rebuilds a table for some changes: the triggers go with it.
            cursor.execute("CREATE TABLE new_message (id integer primary key, body text)")
            cursor.execute("INSERT INTO new_message SELECT * FROM messaging_message")
            cursor.execute("DROP TABLE messaging_message")
            cursor.execute("ALTER TABLE new_message RENAME TO messaging_message")
            cursor.execute("INSERT INTO messaging_message VALUES (3, 'deploy again')")
            assert sqlite_search_index_ensure(db, create=False) is True
            cursor.execute("INSERT INTO messaging_message VALUES (4, 'deploy once more')")
            assert found("deploy") == [3, 4] and found("roll") == [1]
    finally:
        db.close()
