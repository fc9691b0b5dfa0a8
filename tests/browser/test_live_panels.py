"""The room page's panels follow the room live (issue 21, defect 4): a newcomer appears in
the member list, a renamed room shows its new name and topic, and while the socket is
offline the online list says it does not know who is there, until it is back."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import WebSocketRoute, expect

from rooms.room_settings import room_rename
from rooms.services import room_join
from tests.browser.kit import off_loop

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_the_member_list_and_the_header_follow_the_room_live(site, alice, bob, charlie, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    # Subscribed, not only connected: the presence frame follows `subscribed`, which the server
    # sends once the socket is in the room's group. A join before that is news the page never hears.
    expect(bob_page.locator("#online .online__user", has_text="bob")).to_be_visible()
    members = bob_page.locator("#members")
    expect(members).not_to_contain_text("charlie")

    off_loop(room_join, room=lobby, user=charlie)
    newcomer = members.locator('.members__item[data-username="charlie"]')
    expect(newcomer).to_be_visible()
    expect(newcomer.get_by_role("button", name="charlie")).to_have_attribute("title", "Send charlie a direct message")

    off_loop(room_rename, room=lobby, actor=alice, name="Town Square")
    expect(bob_page.locator("#room-name")).to_have_text("Town Square")
    expect(bob_page.locator(f'.sidebar__room[data-room="{lobby.slug}"] a')).to_have_text("Town Square")


def test_the_online_list_is_unknown_while_offline_and_comes_back(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, None)
    blocked = {"now": False}

    def handle(route: WebSocketRoute) -> None:
        if blocked["now"]:
            route.close()  # the server cannot be reached
        else:
            route.connect_to_server()

    bob_page.route_web_socket(re.compile(r"/ws/$"), handle)
    bob_page.goto(lobby.get_absolute_url())
    online = bob_page.locator("#online")
    expect(online.locator(".online__user", has_text="alice")).to_be_visible()
    expect(alice_page.locator("#online .online__user", has_text="bob")).to_be_visible()

    blocked["now"] = True
    bob_page.evaluate("window.pubsubRoomSocket.drop()")
    expect(bob_page.locator("#connection")).to_have_text("offline", timeout=15_000)
    expect(online).to_have_text("Unknown while offline.")
    expect(online.locator(".online__user")).to_have_count(0)

    blocked["now"] = False
    bob_page.get_by_role("button", name="Reconnect now").click()
    expect(bob_page.locator("#connection")).to_have_text("connected")
    expect(online.locator(".online__user", has_text="alice")).to_be_visible()


def test_the_owner_archives_then_deletes_the_room_and_a_member_sees_it_live(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    expect(bob_page.locator("#connection")).to_have_text("connected")
    expect(bob_page.locator("#composer")).to_be_visible()
    owner = site.page_for(alice, f"/rooms/{lobby.slug}/moderation/")

    owner.get_by_role("button", name="Archive the room").click()
    expect(owner.locator(".flash")).to_contain_text("The room is archived")
    expect(bob_page.locator("#composer")).to_be_hidden()
    expect(bob_page.locator("#archived-note")).to_have_text("This room is archived: it is read-only.")

    # Deleting needs the room's name: a wrong one deletes nothing.
    owner.get_by_text("Delete the room").click()
    owner.get_by_label("Type Lobby to confirm").fill("Lobb")
    owner.get_by_role("button", name="Delete Lobby").click()
    expect(owner.locator(".flash")).to_contain_text("Type the room's name, Lobby, to delete it.")
    owner.get_by_text("Delete the room").click()
    owner.get_by_label("Type Lobby to confirm").fill("Lobby")
    owner.get_by_role("button", name="Delete Lobby").click()
    expect(owner.locator(".flash")).to_contain_text("Lobby is deleted.")
    expect(owner).to_have_url(re.compile(r"/$"))
    expect(bob_page.locator("#composer-error")).to_have_text("Lobby was deleted by alice.")
    assert bob_page.goto(lobby.get_absolute_url()).status == 404
