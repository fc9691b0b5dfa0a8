"""A notification shows only what its reader may still read (issue 20, defect 11).

A mention in a message deleted before the persistence job wrote it notifies no one; one
edited before then notifies with its edited text. Once the message is hidden or deleted, or
its reader banned from the room (or removed from a private one), the notification leaves the
notifications page and the unread count, at once (Redis's state counts before PostgreSQL's).
charlie, the outsider, is never notified.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from messaging import moderation as message_moderation
from messaging.models import Notification
from messaging.store.persistence import messages_persist_server
from messaging.tests.wsclient import connected
from rooms import moderation
from rooms.models import Membership

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

persist = database_sync_to_async(messages_persist_server)


@database_sync_to_async
def notifications_page(user) -> str:
    browser = Client()
    browser.force_login(user)
    response = browser.get("/notifications/")
    assert response.status_code == 200
    return response.content.decode()


@database_sync_to_async
def unread_count(user) -> int:
    """The count the navigation shows (messaging.context_processors)."""
    from messaging.selectors import notifications_unread_count

    return notifications_unread_count(user=user)


async def mention(alice, room, body: str) -> int:
    alice_ws = await connected(alice)
    await alice_ws.subscribe(room.slug)
    seq = (await alice_ws.post(room.slug, body))["seq"]
    await alice_ws.close()
    return seq


async def test_a_message_deleted_before_it_was_persisted_notifies_no_one(alice, bob, charlie, private_room):
    bob_ws, charlie_ws = await connected(bob), await connected(charlie)
    alice_ws = await connected(alice)
    await alice_ws.subscribe(private_room.slug)
    seq = (await alice_ws.post(private_room.slug, "@bob @charlie the code is 4711"))["seq"]
    await alice_ws.send({"type": "delete", "room": private_room.slug, "seq": seq})
    await alice_ws.recv_type("message_deleted")

    await persist(server=0)

    assert not await Notification.objects.aexists()
    assert await bob_ws.nothing_more(0.5)
    assert await charlie_ws.nothing_more(0.5)
    assert "4711" not in await notifications_page(bob)
    for ws in (alice_ws, bob_ws, charlie_ws):
        await ws.close()


async def test_a_message_edited_before_it_was_persisted_notifies_with_its_edited_text(alice, bob, private_room):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(private_room.slug)
    seq = (await alice_ws.post(private_room.slug, "@bob the code is 4711"))["seq"]
    await alice_ws.send({"type": "edit", "room": private_room.slug, "seq": seq, "body": "@bob never mind"})
    await alice_ws.recv_type("message_updated")

    await persist(server=0)

    notification = await Notification.objects.aget(user=bob)
    assert notification.excerpt == "@bob never mind"
    await alice_ws.close()


async def test_a_hidden_message_leaves_the_notifications_at_once(alice, bob, private_room):
    await mention(alice, private_room, "@bob something a moderator will hide")
    await persist(server=0)
    assert "will hide" in await notifications_page(bob)
    await Notification.objects.filter(user=bob).aupdate(read_at=None)
    assert await unread_count(bob) == 1

    await database_sync_to_async(message_moderation.room_message_hide)(room=private_room, actor=alice, seq=1)

    assert "will hide" not in await notifications_page(bob)  # before the job wrote the hide
    assert await unread_count(bob) == 0
    await persist(server=0)
    assert "will hide" not in await notifications_page(bob)


async def test_a_banned_member_no_longer_reads_notifications_from_that_room(alice, bob, private_room):
    await mention(alice, private_room, "@bob the plan for tomorrow")
    await persist(server=0)
    assert "the plan for tomorrow" in await notifications_page(bob)

    await database_sync_to_async(moderation.membership_ban)(room=private_room, actor=alice, user=bob)

    page = await notifications_page(bob)
    assert "the plan for tomorrow" not in page and "Secret Plans" not in page
    assert await unread_count(bob) == 0


async def test_a_member_removed_from_a_private_room_no_longer_reads_its_notifications(alice, bob, private_room):
    await mention(alice, private_room, "@bob the plan for tomorrow")
    await persist(server=0)

    await Membership.objects.filter(room=private_room, user=bob).adelete()

    page = await notifications_page(bob)
    assert "the plan for tomorrow" not in page and "Secret Plans" not in page
