"""The WebSocket handshake finds the session, the user and their memberships in one database
hop, and refuses (403) whoever is not signed in."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

import pubsub_site.cache
from messaging.tests.wsclient import connect, session_key_for
from pubsub_site import async_db, wsauth
from pubsub_site.asgi import application
from pubsub_site.wsauth import WebSocketAuthMiddleware, handshake_identity
from rooms.models import Membership
from tests import netclient

pytestmark = pytest.mark.django_db(transaction=True)
closes_async_clients = pytest.mark.usefixtures("async_cleanup")


class ScopeKeeper:
    """An app behind the middleware: keeps the scope it was called with, and accepts."""

    def __init__(self):
        self.scope: dict | None = None

    async def __call__(self, scope, receive, send):
        self.scope = scope
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


@pytest.fixture
def hops(monkeypatch):
    """Counts the middleware's trips to the database thread."""
    made: list[str] = []
    real = wsauth.database_sync_to_async

    def counting(func):
        made.append(func.__name__)
        return real(func)

    monkeypatch.setattr(wsauth, "database_sync_to_async", counting)
    return made


async def handshake(cookie: str | None) -> dict:
    """The scope the middleware hands on for a handshake presenting ``cookie``."""
    keeper = ScopeKeeper()
    headers = [(b"cookie", cookie.encode())] if cookie is not None else []
    communicator = WebsocketCommunicator(WebSocketAuthMiddleware(keeper), "/ws/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.disconnect()
    return keeper.scope


def test_it_reads_the_user_and_memberships_in_one_query_and_the_session_from_the_cache(
    bob, public_room, private_room, django_assert_num_queries
):
    key = netclient.session_key_for(bob)  # written to PostgreSQL only
    with django_assert_num_queries(2):  # the session (then cached), the user with the memberships
        identity = handshake_identity(session_key=key)
    assert identity.user == bob
    assert identity.session.session_key == key
    assert identity.memberships == {private_room.pk: (private_room.slug, 0)}
    with django_assert_num_queries(1):  # the session from the cache, as after a log-in
        again = handshake_identity(session_key=key)
    assert (again.user, again.memberships) == (bob, identity.memberships)


def test_it_makes_no_query_without_a_session(django_assert_num_queries):
    with django_assert_num_queries(0):
        identity = handshake_identity(session_key=None)
    assert not identity.user.is_authenticated
    assert identity.memberships == {}


@pytest.mark.postgresql_only(reason="the handshake reads on the event loop (async_db) on PostgreSQL only")
@closes_async_clients
async def test_on_postgresql_the_handshake_makes_no_hop_and_puts_memberships_on_the_scope(bob, private_room, hops):
    await database_sync_to_async(Membership.objects.filter(room=private_room, user=bob).update)(last_read_seq=7)
    key = await session_key_for(bob)
    scope = await handshake(f"csrftoken=abc; sessionid={key}")
    assert hops == []  # the session from the cache, the user and memberships on the loop
    assert scope["user"] == bob
    assert scope["session"].session_key == key
    assert scope["memberships"] == {private_room.pk: (private_room.slug, 7)}


@pytest.mark.postgresql_only(reason="the handshake reads on the event loop (async_db) on PostgreSQL only")
@closes_async_clients
async def test_handshakes_that_arrive_together_read_their_sessions_in_one_mget_and_their_users_in_one_query(
    alice, bob, charlie, private_room, monkeypatch, async_db_queries
):
    keys = {user: await session_key_for(user) for user in (alice, bob, charlie)}
    await database_sync_to_async(Membership.objects.filter(room=private_room, user=bob).update)(last_read_seq=3)
    queries = async_db_queries
    redis_calls: list[str] = []

    class CountingRedis:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            redis_calls.append(name)
            return getattr(self.client, name)

    real_redis = pubsub_site.cache.get_async_redis
    monkeypatch.setattr(pubsub_site.cache, "get_async_redis", lambda **kwargs: CountingRedis(real_redis(**kwargs)))
    for key in keys.values():  # a first handshake each puts the sessions in the cache (as a log-in does)
        await handshake(f"sessionid={key}")
    queries.clear()
    redis_calls.clear()
    scopes = await asyncio.gather(*(handshake(f"sessionid={key}") for key in keys.values()))

    assert [scope["user"] for scope in scopes] == [alice, bob, charlie]
    assert [scope["memberships"] for scope in scopes] == [
        {private_room.pk: (private_room.slug, 0)},
        {private_room.pk: (private_room.slug, 3)},
        {},
    ]
    assert len(queries) == 1  # alice's, bob's and charlie's users and memberships in one query
    assert sorted(queries[0][0]) == sorted(user.pk for user in keys)
    assert redis_calls == ["mget"]  # the three sessions in one MGET


@closes_async_clients
async def test_a_session_the_cache_lost_is_read_from_postgresql(bob, private_room):
    from django.core.cache import cache

    key = await session_key_for(bob)
    await database_sync_to_async(cache.clear)()
    scope = await handshake(f"sessionid={key}")
    assert scope["user"] == bob
    assert scope["memberships"] == {private_room.pk: (private_room.slug, 0)}


@closes_async_clients
async def test_on_another_database_the_handshake_takes_one_hop(bob, private_room, hops, monkeypatch):
    monkeypatch.setattr(async_db, "native", lambda: False)  # SQLite in development
    identity = await wsauth.ahandshake_identity(session_key=await session_key_for(bob))
    assert hops == ["handshake_identity"]
    assert identity.user == bob
    assert identity.memberships == {private_room.pk: (private_room.slug, 0)}


@closes_async_clients
async def test_a_handshake_without_a_session_cookie_makes_no_hop_and_is_anonymous(hops):
    scope = await handshake("csrftoken=abc")
    assert hops == []
    assert not scope["user"].is_authenticated
    assert scope["session"].session_key is None
    assert scope["memberships"] == {}


@closes_async_clients
async def test_an_outsider_has_no_memberships_on_the_scope(charlie, private_room):
    scope = await handshake(f"sessionid={await session_key_for(charlie)}")
    assert scope["user"] == charlie
    assert scope["memberships"] == {}


@closes_async_clients
@pytest.mark.parametrize(
    "cookie",
    [
        None,
        "",
        "sessionid=",
        "sessionid=short",
        "sessionid=0123456789abcdefghijklmnopqrstuv",  # well formed, but no such session
        "other=1",
    ],
)
async def test_a_missing_or_unknown_session_is_refused_with_403(cookie):
    headers = [(b"origin", b"http://localhost")] + ([(b"cookie", cookie.encode())] if cookie is not None else [])
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert not connected  # closed before accept: the server answers 403


@closes_async_clients
async def test_a_tampered_session_cookie_is_refused_with_403(bob):
    key = await session_key_for(bob)
    tampered = key[:-1] + ("a" if key[-1] != "a" else "b")
    ok, _, _ = await connect(None, extra_headers=[(b"cookie", f"sessionid={tampered}".encode())])
    assert not ok


@closes_async_clients
async def test_a_session_whose_auth_hash_was_tampered_with_is_refused_and_flushed(bob):
    key = await session_key_for(bob)

    def tamper() -> None:
        session = Session.objects.get(pk=key)
        data = session.get_decoded()
        data[HASH_SESSION_KEY] = "0" * 64
        Session.objects.save(key, data, session.expire_date)

    await database_sync_to_async(tamper)()
    ok, _, _ = await connect(None, extra_headers=[(b"cookie", f"sessionid={key}".encode())])
    assert not ok
    assert not await database_sync_to_async(Session.objects.filter(pk=key).exists)()


@closes_async_clients
async def test_a_password_change_logs_out_the_sockets_of_older_sessions(bob):
    key = await session_key_for(bob)
    ok, _, client = await connect(None, extra_headers=[(b"cookie", f"sessionid={key}".encode())])
    assert ok
    await client.close()

    def change_password() -> None:
        bob.set_password("a-new-passphrase-2")
        bob.save()

    await database_sync_to_async(change_password)()
    ok, _, _ = await connect(None, extra_headers=[(b"cookie", f"sessionid={key}".encode())])
    assert not ok
    assert not await database_sync_to_async(Session.objects.filter(pk=key).exists)()


@closes_async_clients
async def test_logging_out_in_another_tab_ends_the_sockets_of_that_session_only(bob):
    tab, other_browser = Client(), Client()
    for browser in (tab, other_browser):
        await database_sync_to_async(browser.force_login)(bob, backend="django.contrib.auth.backends.ModelBackend")
    sockets = []
    for browser in (tab, other_browser):
        cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
        ok, _, socket = await connect(None, extra_headers=[(b"cookie", cookie)])
        assert ok
        sockets.append(socket)
    await database_sync_to_async(tab.post)(reverse("logout"))

    for _ in range(30):
        await sockets[0].send({"type": "ping"})
        reply = await sockets[0].recv()
        if reply["type"] == "error":
            break
        await asyncio.sleep(0.1)
    assert reply["code"] == "forbidden"
    await sockets[1].send({"type": "ping"})
    assert (await sockets[1].recv())["type"] == "pong"
    await sockets[1].close()


@closes_async_clients
async def test_an_inactive_user_is_refused(bob):
    key = await session_key_for(bob)
    bob.is_active = False
    await database_sync_to_async(bob.save)()
    ok, _, _ = await connect(None, extra_headers=[(b"cookie", f"sessionid={key}".encode())])
    assert not ok


def test_a_session_signed_before_a_secret_key_rotation_stays_valid_and_keeps_its_key(bob, settings):
    old_key = settings.SECRET_KEY
    key = netclient.session_key_for(bob)
    settings.SECRET_KEY = "rotated-" + old_key
    settings.SECRET_KEY_FALLBACKS = [old_key]
    identity = handshake_identity(session_key=key)
    assert identity.user == bob
    assert identity.session.session_key == key
    assert Session.objects.filter(pk=key).exists()


def test_without_the_old_key_in_the_fallbacks_that_session_ends(bob, settings):
    old_key = settings.SECRET_KEY
    key = netclient.session_key_for(bob)
    settings.SECRET_KEY = "rotated-" + old_key
    settings.SECRET_KEY_FALLBACKS = []
    assert not handshake_identity(session_key=key).user.is_authenticated
