"""A room page that missed a change to the room's members, name or topic finds out and reads
them again (protocol.details): over a real socket, Redis and the channel layer, with the page
and its details read as the browser reads them.

alice owns the rooms; bob is a member with the page open; frank joins the public room while
bob's page has no socket in the room's group; charlie is an outsider of the private room.
"""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from messaging.tests.wsclient import connected
from rooms import room_settings
from rooms.services import room_join, room_leave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("async_cleanup")]


def page_details(client: Client, room) -> str:
    """The details revision the room page was rendered with ("" when unknown)."""
    html = client.get(room.get_absolute_url()).content.decode()
    return re.search(r'data-details="([^"]*)"', html).group(1)


def read_again(client: Client, room) -> dict:
    response = client.get(f"/rooms/{room.slug}/details/")
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    return response.json()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_a_page_that_missed_a_join_sees_it_in_its_subscription_and_reads_the_members_again(
    alice, bob, public_room, make_user
):
    await database_sync_to_async(room_join)(room=public_room, user=bob)
    frank = await database_sync_to_async(make_user)("frank")
    page = await database_sync_to_async(signed_in)(bob)
    rendered = await database_sync_to_async(page_details)(page, public_room)

    # frank joins after bob's page was rendered and before its socket subscribed: told to nobody on it.
    await database_sync_to_async(room_join)(room=public_room, user=frank)
    bob_ws = await connected(bob)
    subscribed = await bob_ws.subscribe(public_room.slug)
    assert str(subscribed["details"]) != rendered

    details = await database_sync_to_async(read_again)(page, public_room)
    assert details["details"] == subscribed["details"]
    assert 'data-username="frank"' in details["members"]
    assert (details["name"], details["topic"], details["archived"]) == ("Lobby", "Say hello", False)
    await bob_ws.close()


async def test_a_page_that_missed_nothing_has_its_subscriptions_revision(alice, bob, public_room):
    await database_sync_to_async(room_join)(room=public_room, user=bob)
    page = await database_sync_to_async(signed_in)(bob)
    rendered = await database_sync_to_async(page_details)(page, public_room)
    bob_ws = await connected(bob)
    assert str((await bob_ws.subscribe(public_room.slug))["details"]) == rendered
    await bob_ws.close()


async def test_every_change_told_live_carries_the_revision_after_it(alice, bob, public_room, make_user):
    await database_sync_to_async(room_join)(room=public_room, user=bob)
    frank = await database_sync_to_async(make_user)("frank")
    bob_ws = await connected(bob, ignore=frozenset({"presence", "presence_diff", "unread", "typing", "clap_board"}))
    start = (await bob_ws.subscribe(public_room.slug))["details"]

    await database_sync_to_async(room_join)(room=public_room, user=frank)
    assert (await bob_ws.recv_type("member_updated"))["details"] == start + 1
    await database_sync_to_async(room_settings.room_rename)(room=public_room, actor=alice, name="Town Square")
    assert (await bob_ws.recv_type("room_updated"))["details"] == start + 2
    await database_sync_to_async(room_leave)(room=public_room, user=frank)
    assert (await bob_ws.recv_type("member_left"))["details"] == start + 3

    # A page rendered now shows all three, and says so.
    page = await database_sync_to_async(signed_in)(bob)
    assert await database_sync_to_async(page_details)(page, public_room) == str(start + 3)
    details = await database_sync_to_async(read_again)(page, public_room)
    assert (details["details"], details["name"]) == (start + 3, "Town Square")
    assert 'data-username="frank"' not in details["members"]
    await bob_ws.close()


def test_the_details_are_the_room_readers_and_only_read(client, alice, bob, charlie, private_room):
    url = f"/rooms/{private_room.slug}/details/"
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

    client.force_login(charlie)  # not in the private room: it does not exist for him
    assert client.get(url).status_code == 404
    client.force_login(bob)
    assert client.post(url).status_code == 405
    details = client.get(url).json()
    assert set(details) == {"details", "name", "topic", "archived", "members"}
    assert 'data-username="alice"' in details["members"] and 'data-username="bob"' in details["members"]
    assert client.get("/rooms/no-such-room/details/").status_code == 404
