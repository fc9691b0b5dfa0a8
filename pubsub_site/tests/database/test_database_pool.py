"""PostgreSQL is reached through psycopg's pool, sized from the environment; SQLite is not pooled."""

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from pubsub_site.tests.deploy.test_settings import run_manage

SHOW_DATABASE = (
    "from django.conf import settings; d = settings.DATABASES['default']; "
    "print(d['ENGINE'], d['CONN_MAX_AGE'], d['OPTIONS'].get('pool'))"
)
POSTGRES = "postgres://postgres@127.0.0.1:5432/pubsub"


def database_settings(**env: str) -> str:
    result = run_manage("shell", "-c", SHOW_DATABASE, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_postgresql_gets_a_pool_sized_from_the_environment():
    shown = database_settings(DATABASE_URL=POSTGRES, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="4", DB_POOL_TIMEOUT="2.5")
    assert shown == "django.db.backends.postgresql 0 {'min_size': 1, 'max_size': 4, 'timeout': 2.5}"


def test_the_pool_can_be_turned_off_for_persistent_connections():
    shown = database_settings(DATABASE_URL=POSTGRES, DB_POOL="0", DB_CONN_MAX_AGE="60")
    assert shown == "django.db.backends.postgresql 60 None"


def test_sqlite_is_not_pooled():
    assert database_settings(DATABASE_URL="sqlite:///:memory:") == "django.db.backends.sqlite3 0 None"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_CONN_MAX_AGE": "60"}, "DB_CONN_MAX_AGE must be 0 with the connection pool"),
        ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}, "need 0 <= min <= max"),
        ({"DB_POOL_MAX_SIZE": "ten"}, "DB_POOL_MAX_SIZE='ten' is not an integer"),
    ],
)
def test_a_bad_pool_setting_stops_the_process(env, message):
    result = run_manage("check", DATABASE_URL=POSTGRES, **env)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.postgresql_only(reason="SQLite is not pooled")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_database_hops_reuse_pooled_connections_to_the_test_database():
    def backend() -> tuple[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), pg_backend_pid()")
            return cursor.fetchone()

    most = connection.settings_dict["OPTIONS"]["pool"]["max_size"]
    seen = [await database_sync_to_async(backend)() for _ in range(most + 2)]
    assert {name for name, _ in seen} == {connection.settings_dict["NAME"]}
    assert connection.pool is not None
    # Without a pool every hop opens (and closes) a connection of its own: a backend each.
    # With it, the hops share the pool's connections, never more than its size (how many of
    # them serve depends on how fast the pool takes each one back: not asserted).
    assert len({pid for _, pid in seen}) <= most
