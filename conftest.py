"""Fixtures shared by the whole suite: personas, a clean Redis, real services."""

from __future__ import annotations

import pytest
from django.conf import settings

from pubsub_site import async_db
from pubsub_site.redis_client import all_room_redis_urls, get_redis


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

    from pubsub_site.redis_client import close_async_clients_for_running_loop

    yield
    await close_async_clients_for_running_loop()
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2's deliberate slowness is for production; tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Most tests send fast on purpose; the rate-limit tests set their own limits.
GENEROUS_WS_LIMITS = {"send": "10000/second", "clap": "10000/second", "edit": "10000/second"}


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
