"""Moderation seen from the other side: a deleted message disappears, a banned member is
shown out of the room, live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from rooms.moderation import membership_ban
from tests.browser.kit import off_loop, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_a_moderator_deletes_a_message_and_it_disappears_for_everyone(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    say(bob_page, "buy cheap watches at https://spam.example/")
    say(bob_page, "and a normal message")
    spam = alice_page.locator("li.message", has_text="buy cheap watches")
    expect(spam).to_be_visible()
    expect(bob_page.locator("li.message:not(.message--pending)")).to_have_count(2)

    delete = spam.get_by_role("button", name="Delete")
    alice_page.once("dialog", lambda dialog: dialog.accept())
    delete.click()

    for page in (bob_page, alice_page):
        first = page.locator("#messages li.message").first
        expect(first.locator(".message__body")).to_have_text("This message was deleted.")
        expect(first).to_have_class("message message--deleted")
        expect(first.locator("a")).to_have_count(0)
        expect(first.locator(".message__actions")).to_be_hidden()
        expect(page.locator("#messages li.message").nth(1)).to_contain_text("and a normal message")
    bob_page.reload()
    expect(bob_page.locator("#messages li.message").first).to_contain_text("This message was deleted.")
    expect(bob_page.locator("#messages")).not_to_contain_text("cheap watches")


def test_a_dismissed_confirmation_deletes_nothing(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    say(alice_page, "keep me")
    mine = alice_page.locator("li.message:not(.message--pending)", has_text="keep me")
    alice_page.once("dialog", lambda dialog: dialog.dismiss())
    mine.get_by_role("button", name="Delete").click()
    alice_page.wait_for_timeout(500)
    expect(mine.locator(".message__body")).to_have_text("keep me")


def test_a_banned_member_is_shown_out_of_the_room_live(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    expect(alice_page.locator("#online li.online__user")).to_have_text(["alice", "bob"])
    say(bob_page, "spam spam spam")
    expect(alice_page.locator("li.message", has_text="spam spam spam")).to_be_visible()

    off_loop(membership_ban, room=lobby, actor=alice, user=bob, reason="spam")

    error = bob_page.locator("#composer-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("You were banned from this room: spam.")
    expect(bob_page.locator("#composer")).to_be_hidden()
    expect(bob_page.locator("#online li.online__user")).to_have_count(0)
    expect(alice_page.locator("#online li.online__user")).to_have_text(["alice"])
    # It stays said: the notice does not fade like a passing error.
    bob_page.wait_for_timeout(6500)
    expect(error).to_be_visible()
    # Messages go on without bob.
    say(alice_page, "back to work")
    expect(alice_page.locator("li.message:not(.message--pending)", has_text="back to work")).to_be_visible()
    bob_page.wait_for_timeout(500)
    expect(bob_page.locator("#messages")).not_to_contain_text("back to work")
    assert bob_page.goto(lobby.get_absolute_url()).status == 404
