"""Live unread counts agree with a reload and across tabs (issue 21, defect 2).

A socket's counts start from the read markers of the database, but newer markers live
in Redis until the persistence job copies them: the socket must take those, and its
user's reads and sends in other tabs. alice posts in a private room, bob reads it,
charlie (an outsider) hears nothing of it. Over real WebSockets and Redis.
"""

import pytest
from channels.db import database_sync_to_async

from messaging.selectors import unread_counts
from messaging.store import changes
from messaging.tests.wsclient import connected
from rooms.models import Membership
from rooms.tests.conftest import post_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]

QUIET = frozenset({"presence", "presence_diff", "typing", "clap_board"})


async def unread_for(ws, room: str, seq: int, timeout: float = 5) -> dict:
    """The first `unread` frame for ``room`` that counts up to ``seq``."""
    while True:
        frame = await ws.recv_type("unread", timeout=timeout)
        if frame["room"] == room and frame["seq"] >= seq:
            return frame


async def test_a_read_room_counts_one_unread_after_one_message_on_a_new_socket(alice, bob, private_room):
    alice_ws = await connected(alice)
    await alice_ws.subscribe(private_room.slug)
    for i in range(3):
        await alice_ws.post(private_room.slug, f"before {i}")
    # bob read all three a while ago (the event that told his sockets is long gone): the
    # marker is in Redis, not yet in the database.
    await changes.mark_read(room_id=private_room.pk, user_id=bob.pk, seq=3)
    stored = await database_sync_to_async(Membership.objects.get)(room=private_room, user=bob)
    assert stored.last_read_seq == 0
    # bob reloads a page of another room: a new socket, which follows the room's activity.
    bob_ws = await connected(bob, ignore=QUIET)
    await alice_ws.post(private_room.slug, "one more")
    unread = await unread_for(bob_ws, private_room.slug, 4)
    assert unread["count"] == 1
    reloaded = await database_sync_to_async(unread_counts)(user_id=bob.pk, room_ids=[private_room.pk])
    assert reloaded == {private_room.pk: unread["count"]}
    await alice_ws.close()
    await bob_ws.close()


async def test_a_message_sent_in_one_tab_is_not_unread_in_another(alice, bob, private_room):
    bob_other_tab = await connected(bob, ignore=QUIET)
    bob_tab = await connected(bob, ignore=QUIET)
    await bob_tab.subscribe(private_room.slug)
    await bob_tab.post(private_room.slug, "my own words")
    unread = await unread_for(bob_other_tab, private_room.slug, 1)
    assert unread["count"] == 0
    alice_ws = await connected(alice)
    await alice_ws.subscribe(private_room.slug)
    await alice_ws.post(private_room.slug, "an answer")
    assert (await unread_for(bob_other_tab, private_room.slug, 2))["count"] == 1
    await bob_tab.send({"type": "read", "room": private_room.slug, "seq": 2})
    assert (await unread_for(bob_other_tab, private_room.slug, 2))["count"] == 0
    reloaded = await database_sync_to_async(unread_counts)(user_id=bob.pk, room_ids=[private_room.pk])
    assert reloaded == {private_room.pk: 0}
    for ws in (alice_ws, bob_tab, bob_other_tab):
        await ws.close()


async def test_an_outsider_hears_no_unread_counts_of_a_private_room(alice, charlie, private_room):
    charlie_ws = await connected(charlie, ignore=frozenset({"presence", "presence_diff"}))
    alice_ws = await connected(alice)
    await alice_ws.subscribe(private_room.slug)
    await alice_ws.post(private_room.slug, "not for charlie")
    assert await charlie_ws.nothing_more(1.5)
    await alice_ws.close()
    await charlie_ws.close()


async def test_a_read_in_one_tab_clears_the_badge_another_tab_was_rendered_with(alice, bob, private_room):
    # Three messages from before bob's tabs opened: no activity reaches them afterwards.
    for i in range(3):
        await database_sync_to_async(post_message)(private_room, alice, f"earlier {i}")
    bob_other_tab = await connected(bob, ignore=QUIET)  # its page shows 3 unread
    bob_tab = await connected(bob, ignore=QUIET)
    await bob_tab.subscribe(private_room.slug)
    await bob_tab.send({"type": "read", "room": private_room.slug, "seq": 3})
    unread = await unread_for(bob_other_tab, private_room.slug, 3)
    assert unread["count"] == 0
    await bob_tab.close()
    await bob_other_tab.close()
