"""The room page's panels follow the room live (issue 21, defect 4): a newcomer appears in
the member list, a renamed room shows its new name and topic, and while the socket is
offline the online list says it does not know who is there, until it is back. What changed
while the page had no subscription (before its socket subscribed, or while it was offline)
is on the page once it has one (protocol.details)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import WebSocketRoute, expect

from rooms.moderation import membership_promote
from rooms.room_settings import room_rename
from rooms.services import room_join, room_leave
from tests.browser.kit import off_loop

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_the_member_list_and_the_header_follow_the_room_live(site, alice, bob, charlie, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    # Subscribed, not only connected (the presence frame follows `subscribed`): charlie's join is
    # then told live. One before it is read again over HTTP (the tests below).
    expect(bob_page.locator("#online .online__user", has_text="bob")).to_be_visible()
    members = bob_page.locator("#members")
    expect(members).not_to_contain_text("charlie")

    off_loop(room_join, room=lobby, user=charlie)
    newcomer = members.locator('.members__item[data-username="charlie"]')
    expect(newcomer).to_be_visible()
    expect(newcomer.get_by_role("button", name="charlie", exact=True)).to_have_attribute(
        "title", "Send charlie a direct message"
    )
    # As the page's own items: a profile card behind the avatar, a role tag that follows the role.
    newcomer.get_by_role("button", name="Profile of charlie").click()
    expect(bob_page.locator("#profile-card-dialog")).to_contain_text("charlie")
    bob_page.keyboard.press("Escape")
    off_loop(membership_promote, room=lobby, actor=alice, user=charlie)
    expect(newcomer.locator(".members__role")).to_have_text("moderator")
    expect(newcomer.get_by_role("button", name="Profile of charlie")).to_be_visible()

    off_loop(room_rename, room=lobby, actor=alice, name="Town Square")
    expect(bob_page.locator("#room-name")).to_have_text("Town Square")
    expect(bob_page.locator(f'.sidebar__room[data-room="{lobby.slug}"] a')).to_have_text("Town Square")


def hold_the_socket(page) -> dict:
    """Route the page's socket: refused while ``held["now"]`` (the server cannot be reached)."""
    held = {"now": True}

    def handle(route: WebSocketRoute) -> None:
        if held["now"]:
            route.close()
        else:
            route.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/$"), handle)
    return held


def details_reads(page) -> list[str]:
    """The page's requests for the room's details, as they are made."""
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url) if request.url.endswith("/details/") else None)
    return reads


def test_a_join_before_the_pages_socket_subscribed_is_on_its_member_list(site, bob, charlie, lobby):
    bob_page = site.page_for(bob, None)
    held = hold_the_socket(bob_page)
    reads = details_reads(bob_page)
    bob_page.goto(lobby.get_absolute_url())
    members = bob_page.locator("#members")
    expect(members.locator('.members__item[data-username="bob"]')).to_be_visible()
    expect(members).not_to_contain_text("charlie")

    off_loop(room_join, room=lobby, user=charlie)  # no socket of bob's page is in the room's group
    held["now"] = False
    bob_page.evaluate("window.pubsubRoomSocket.retryNow()")
    expect(bob_page.locator("#online .online__user", has_text="bob")).to_be_visible(timeout=15_000)
    newcomer = members.locator('.members__item[data-username="charlie"]')
    expect(newcomer).to_be_visible()
    # The page's own markup, read again: the direct-message button and the profile card.
    expect(newcomer.get_by_role("button", name="charlie", exact=True)).to_have_attribute(
        "title", "Send charlie a direct message"
    )
    expect(newcomer.get_by_role("button", name="Profile of charlie")).to_be_visible()
    assert len(reads) == 1, reads


def test_a_page_back_from_offline_shows_who_left_and_the_name_it_missed_and_reads_nothing_otherwise(
    site, alice, bob, charlie, lobby
):
    off_loop(room_join, room=lobby, user=charlie)
    bob_page = site.page_for(bob, None)
    held = hold_the_socket(bob_page)
    held["now"] = False
    reads = details_reads(bob_page)
    bob_page.goto(lobby.get_absolute_url())
    members = bob_page.locator("#members")
    expect(bob_page.locator("#online .online__user", has_text="bob")).to_be_visible()
    expect(members.locator('.members__item[data-username="charlie"]')).to_be_visible()
    assert reads == []  # it missed nothing: nothing is read again

    held["now"] = True
    bob_page.evaluate("window.pubsubRoomSocket.drop()")
    expect(bob_page.locator("#connection")).to_have_text("offline", timeout=15_000)
    off_loop(room_leave, room=lobby, user=charlie)
    off_loop(room_rename, room=lobby, actor=alice, name="Town Square")
    expect(bob_page.locator("#room-name")).to_have_text("Lobby")  # nothing told while offline

    reconnect_now(bob_page, held)
    expect(bob_page.locator("#connection")).to_have_text("connected")
    expect(bob_page.locator("#room-name")).to_have_text("Town Square")
    expect(bob_page.locator(f'.sidebar__room[data-room="{lobby.slug}"] a')).to_have_text("Town Square")
    expect(members.locator('.members__item[data-username="charlie"]')).to_have_count(0)
    expect(members.locator('.members__item[data-username="bob"]')).to_be_visible()
    assert len(reads) == 1, reads


def reconnect_now(page, blocked: dict) -> None:
    """Let the socket reach the server again and press "Reconnect now". The button shows only
    while the page is offline, and the page's own retries hide it for a moment each: it is
    pressed once seen, as soon as the server can be reached, without waiting for it to stand
    still (a retry of the page's own that got through first leaves nothing for it to do)."""
    button = page.get_by_role("button", name="Reconnect now")
    expect(button).to_be_visible()
    blocked["now"] = False
    button.dispatch_event("click")


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

    reconnect_now(bob_page, blocked)
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
