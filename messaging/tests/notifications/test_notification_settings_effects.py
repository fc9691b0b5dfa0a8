"""What the notification settings change, over real sockets and the real persistence job: a
member at "nothing" or snoozed hears nothing of a mention, a direct message notifies its other
people like a mention, a member at "all" hears every message (a frame, no row), and the live
`notify_settings` frame reaches the user's other pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from messaging.models import Notification
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from rooms.models import Membership
from rooms.services import direct_open

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


async def post(author, room, body: str) -> int:
    ws = await connected(author)
    await ws.subscribe(room.slug)
    seq = (await ws.post(room.slug, body))["seq"]
    await ws.close()
    return seq


async def set_membership(room, user, **fields) -> None:
    await Membership.objects.filter(room=room, user=user).aupdate(**fields)


async def test_a_mention_of_a_member_at_nothing_notifies_nothing(alice, bob, private_room):
    await set_membership(private_room, bob, notify_level="nothing")
    bob_ws = await connected(bob)

    await post(alice, private_room, "@bob are you there?")
    await persist(server=0)

    assert not await Notification.objects.filter(user=bob).aexists()
    assert await bob_ws.nothing_more(0.5)
    await bob_ws.close()


async def test_a_mention_of_a_snoozed_member_notifies_nothing_until_the_snooze_ends(alice, bob, private_room):
    await set_membership(private_room, bob, notifications_snoozed_until=timezone.now() + timedelta(hours=1))
    bob_ws = await connected(bob)

    await post(alice, private_room, "@bob quiet now?")
    await persist(server=0)
    assert not await Notification.objects.filter(user=bob).aexists()
    assert await bob_ws.nothing_more(0.5)

    await set_membership(private_room, bob, notifications_snoozed_until=timezone.now() - timedelta(seconds=1))
    seq = await post(alice, private_room, "@bob and now?")
    await persist(server=0)

    frame = await bob_ws.recv_type("notification")
    assert (frame["kind"], frame["seq"]) == ("mention", seq)
    await bob_ws.close()


async def test_a_direct_message_notifies_the_other_member_like_a_mention(alice, bob):
    room = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    bob_ws = await connected(bob)

    seq = await post(alice, room, "lunch at noon?")
    await persist(server=0)

    frame = await bob_ws.recv_type("notification")
    assert frame["kind"] == "direct"
    assert (frame["room"], frame["seq"], frame["excerpt"]) == (room.slug, seq, "lunch at noon?")
    assert frame["from"] == {"id": alice.pk, "username": "alice"}
    notification = await Notification.objects.aget(user=bob)
    assert (notification.kind, notification.seq) == ("direct", seq)
    assert not await Notification.objects.filter(user=alice).aexists()  # not the author
    page = await database_sync_to_async(_page)(bob, "/notifications/")
    assert "sent you a direct message" in page and "lunch at noon?" in page
    await bob_ws.close()


async def test_a_direct_conversation_set_to_nothing_notifies_nothing(alice, bob):
    room = await database_sync_to_async(direct_open)(opener=alice, usernames=["bob"])
    await set_membership(room, bob, notify_level="nothing")
    bob_ws = await connected(bob)

    await post(alice, room, "lunch at noon?")
    await persist(server=0)

    assert not await Notification.objects.aexists()
    assert await bob_ws.nothing_more(0.5)
    await bob_ws.close()


async def test_a_member_at_all_hears_of_every_message_without_a_notification_row(alice, bob, private_room):
    await set_membership(private_room, bob, notify_level="all")
    bob_ws = await connected(bob)

    seq = await post(alice, private_room, "the plan is ready")
    await persist(server=0)

    frame = await bob_ws.recv_type("notification")
    assert (frame["kind"], frame["room"], frame["seq"]) == ("message", private_room.slug, seq)
    assert not await Notification.objects.aexists()  # not on the notifications page, not e-mailed
    await bob_ws.close()


async def test_a_member_at_mentions_hears_nothing_of_a_plain_message(alice, bob, private_room):
    bob_ws = await connected(bob)

    await post(alice, private_room, "the plan is ready")
    await persist(server=0)

    assert await bob_ws.nothing_more(0.5)
    await bob_ws.close()


async def test_a_settings_change_reaches_the_users_other_pages(bob, private_room):
    other_tab = await connected(bob)

    response = await database_sync_to_async(_post)(
        bob, f"/rooms/{private_room.slug}/notifications/", {"snooze": "1h"}, json=True
    )
    assert response.status_code == 200

    frame = await other_tab.recv_type("notify_settings")
    assert frame["room"] == private_room.slug and frame["level"] == "mentions"
    assert frame["snoozed_until"] == response.json()["snoozed_until"] is not None
    await other_tab.close()


async def test_an_outsider_cannot_change_a_rooms_settings_nor_learn_of_it(charlie, private_room):
    charlie_ws = await connected(charlie)

    response = await database_sync_to_async(_post)(
        charlie, f"/rooms/{private_room.slug}/notifications/", {"level": "all"}, json=True
    )

    assert response.status_code == 404
    assert await charlie_ws.nothing_more(0.5)
    await charlie_ws.close()


def _client(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def _page(user, path: str) -> str:
    response = _client(user).get(path)
    assert response.status_code == 200
    return response.content.decode()


def _post(user, path: str, data: dict, *, json: bool = False):
    headers = {"Accept": "application/json"} if json else {}
    return _client(user).post(path, data, headers=headers)
