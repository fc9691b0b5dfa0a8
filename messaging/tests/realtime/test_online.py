"""Whether a user has an open socket in any web process (messaging.realtime.online)."""

from __future__ import annotations

import asyncio
import time

import pytest

from messaging.realtime import online
from messaging.store import online as store_online
from messaging.tests.wsclient import connected, eventually
from pubsub_site.redis.client import get_redis

pytestmark = pytest.mark.usefixtures("async_cleanup")


async def test_a_user_is_online_while_any_of_their_sockets_is_open():
    online.connection_opened(user_id=7, channel="specific.a")
    online.connection_opened(user_id=7, channel="specific.b")
    online.connection_opened(user_id=8, channel="specific.c")
    assert store_online.users_online(user_ids=[7, 8, 9]) == set()  # written together, a moment later
    await online.tracker().flush()
    assert store_online.users_online(user_ids=[7, 8, 9]) == {7, 8}

    online.connection_closed(channel="specific.a")
    await online.tracker().flush()
    assert store_online.users_online(user_ids=[7, 8]) == {7, 8}  # a second tab is still open
    online.connection_closed(channel="specific.b")
    online.connection_closed(channel="specific.c")
    await online.tracker().flush()
    assert store_online.users_online(user_ids=[7, 8]) == set()


async def test_closing_a_socket_that_was_never_counted_changes_nothing():
    online.connection_opened(user_id=7, channel="specific.a")
    online.connection_closed(channel="specific.refused")
    await online.tracker().flush()
    assert store_online.users_online(user_ids=[7]) == {7}


async def test_a_dead_process_entries_expire_and_a_live_process_keeps_its_own(settings):
    online.connection_opened(user_id=7, channel="specific.a")
    await online.tracker().flush()
    # A process that died without saying goodbye: its entry expired a second ago.
    get_redis(None).zadd(store_online.online_key(8), {"dead-process": time.time() - 1})
    assert store_online.users_online(user_ids=[7, 8]) == {7}

    keeper = online.tracker()
    get_redis(None).zadd(store_online.online_key(7), {keeper.token: time.time() + 1})  # about to expire
    await keeper.beat()
    assert get_redis(None).zscore(store_online.online_key(7), keeper.token) > time.time() + settings.PRESENCE_TTL - 5
    assert 0 < get_redis(None).ttl(store_online.online_key(7)) <= settings.PRESENCE_TTL + settings.PRESENCE_HEARTBEAT


async def test_the_heartbeat_marks_every_user_in_batches_and_drops_dead_processes_entries(monkeypatch):
    monkeypatch.setattr(online, "MARK_BATCH", 3)
    users = list(range(100, 108))
    for user_id in users:
        online.connection_opened(user_id=user_id, channel=f"specific.{user_id}")
    get_redis(None).zadd(store_online.online_key(100), {"dead-process": time.time() - 1})
    await online.tracker().beat()
    assert store_online.users_online(user_ids=users) == set(users)  # 8 users, 3 calls
    assert get_redis(None).zrange(store_online.online_key(100), 0, -1) == [online.tracker().token.encode()]


async def test_the_heartbeat_puts_back_an_entry_a_racing_close_removed():
    online.connection_opened(user_id=7, channel="specific.a")
    get_redis(None).delete(store_online.online_key(7))  # the ZREM of a close that lost the race
    await online.tracker().beat()
    assert store_online.users_online(user_ids=[7]) == {7}


@pytest.mark.django_db(transaction=True)
async def test_the_consumer_counts_its_sockets(bob):
    """A socket on no room at all (the room list, the notifications page) counts too."""
    first, second = await connected(bob), await connected(bob)
    await eventually(lambda: store_online.users_online(user_ids=[bob.pk]) == {bob.pk})
    await first.close()
    await asyncio.sleep(0.1)
    assert store_online.users_online(user_ids=[bob.pk]) == {bob.pk}
    await second.close()
    await eventually(lambda: store_online.users_online(user_ids=[bob.pk]) == set())
