"""Fixtures shared by the whole suite: personas, a clean Redis, real services."""

from __future__ import annotations

import pytest
from django.conf import settings

from pubsub_site import async_db
from pubsub_site.redis.client import all_room_redis_urls, get_redis

# The SQLite leg of `make test` (DATABASE_URL=sqlite:///…, `pytest -m sqlite`): every test that
# starts no process, no browser and no container, and besides these files and tests that do,
# get the `sqlite` mark here, the one place that says which. They are what SQLite, the
# `make run` default, must do as PostgreSQL does: all the unit and socket tests, and over real
# processes persistence, read positions, search, mentions, the worker, and a conversation in
# the browser. The PostgreSQL leg runs everything, these included.
HEAVY_MARKS = ("processes", "browser", "container")
SQLITE_LEG = (
    "messaging/tests/store/test_persistence.py",
    "messaging/tests/test_search.py",
    "messaging/tests/test_interactions.py",
    "messaging/tests/notifications/test_mention_emails.py",
    "messaging/tests/test_replies.py",
    "messaging/tests/store/test_room_counters.py",
    "messaging/tests/realtime/test_consumer.py",
    "rooms/tests/direct/test_direct_messages.py",
    "pubsub_site/tests/monitoring/test_live_status.py",
    "pubsub_site/tests/database/test_sqlite.py",
    "tests/processes/test_sqlite_processes.py",
    "tests/processes/test_message_path.py",
    "tests/processes/test_webhooks_processes.py",
    "tests/processes/test_link_previews_processes.py",
    "tests/browser/messaging/test_live_chat.py::test_two_people_chat_live_both_ways",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        light = not any(item.get_closest_marker(mark) for mark in HEAVY_MARKS)
        if light or item.nodeid.startswith(SQLITE_LEG):
            item.add_marker(pytest.mark.sqlite)


def pytest_sessionfinish(session, exitstatus):
    """The tests are done: pytest's own collections from here on are no pause of a server worth
    a warning (pubsub_site.gc_policy, installed by pubsub_site.asgi), and its log's streams close."""
    from pubsub_site import gc_policy

    gc_policy.stop_timing()


def pytest_runtest_setup(item):
    """``@pytest.mark.postgresql_only(reason=...)``: skipped on another database, saying why."""
    marker = item.get_closest_marker("postgresql_only")
    if marker is None:
        return
    reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
    if not reason:
        raise pytest.UsageError(f"{item.nodeid}: postgresql_only needs a reason")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip(f"PostgreSQL only: {reason}")


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts with empty room servers (the test Redis database, not the dev one)
    and a fresh channel layer: a layer keeps asyncio locks bound to the loop that made them,
    and every async test has a loop of its own."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    for url in {*all_room_redis_urls(), settings.REDIS_URL}:
        get_redis(url=url).flushdb()
    yield
    # The event loops' own database connections (pubsub_site.async_db): the test's loop is
    # gone, and the test database must have no session left when it is dropped.
    async_db.close_all()


@pytest.fixture
async def async_cleanup():
    """Close what an async test opened on its loop and in the ORM's worker thread."""
    from channels.db import database_sync_to_async
    from django.db import connections

    from pubsub_site.redis.client import close_async_clients_for_running_loop

    yield
    await close_async_clients_for_running_loop()
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def async_db_queries(monkeypatch):
    """The parameters of every query the event loop's reads make (pubsub_site.async_db), in order."""
    from pubsub_site import async_db

    made: list[object] = []
    real = async_db.fetchall

    async def counting(sql, params):
        made.append(params)
        return await real(sql, params)

    monkeypatch.setattr(async_db, "fetchall", counting)
    return made


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is for production; tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Most tests send fast on purpose; the rate-limit tests set their own limits.
GENEROUS_WS_LIMITS = {
    "send": "10000/second",
    "clap": "10000/second",
    "edit": "10000/second",
    "react": "10000/second",
    "pin": "10000/second",
}


@pytest.fixture(autouse=True)
def generous_rate_limits(settings):
    settings.WS_RATE_LIMITS = dict(GENEROUS_WS_LIMITS)


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, password: str = "correct-horse-battery"):
        return django_user_model.objects.create_user(username=username, password=password)

    return make


@pytest.fixture
def alice(make_user):
    """The owner of the rooms in most tests."""
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    """A member."""
    return make_user("bob")


@pytest.fixture
def charlie(make_user):
    """An outsider, who must see nothing private."""
    return make_user("charlie")


@pytest.fixture
def public_room(alice):
    from rooms.services import room_create

    return room_create(creator=alice, name="Lobby", topic="Say hello")


@pytest.fixture
def private_room(alice, bob):
    from rooms.models import Membership, Room
    from rooms.services import room_create

    room = room_create(creator=alice, name="Secret Plans", visibility=Room.Visibility.PRIVATE)
    # A private room's slug carries a random part (rooms.services._unique_slug); the tests
    # name this one plainly.
    Room.objects.filter(pk=room.pk).update(slug="secret-plans")
    room.refresh_from_db()
    Membership.objects.create(room=room, user=bob)
    return room
