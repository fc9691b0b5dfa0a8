"""A newcomer signs up through the form, creates a private room, invites a member, and
they talk; an outsider sees nothing of it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from rooms.models import Room

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_sign_up_create_a_private_room_invite_and_talk(site, bob, charlie):
    dora = site.anonymous("/accounts/signup/")
    expect(dora).to_have_title("Sign up · pubsub")
    dora.get_by_label("Username").fill("dora")
    dora.get_by_label("Password", exact=True).fill("a-long-and-happy-passphrase")
    dora.get_by_label("Password confirmation").fill("a-long-and-happy-passphrase")
    dora.get_by_role("button", name="Sign up").click()
    # She lands in the default room, welcomed (issue 21).
    expect(dora).to_have_url(re.compile(r"/rooms/lobby/$"))
    expect(dora.locator(".flash")).to_contain_text("Welcome to pubsub, dora!")
    expect(dora.locator("#connection")).to_have_text("connected")
    expect(dora.locator(".topbar__user")).to_have_text("dora")
    assert get_user_model().objects.filter(username="dora").exists()
    dora.goto("/")

    dora.get_by_role("link", name="New room", exact=True).first.click()
    dora.get_by_label("Name").fill("Book Club")
    dora.get_by_label("Topic").fill("One chapter a week")
    dora.get_by_label("Visibility").select_option("private")
    dora.get_by_role("button", name="Create room").click()
    # A private room's address carries a random part: it does not give its name away (issue 20).
    expect(dora).to_have_url(re.compile(r"/rooms/book-club-[0-9a-f]{8}/$"))
    expect(dora.get_by_role("heading", level=1)).to_have_text("Book Club")
    expect(dora.locator("#connection")).to_have_text("connected")
    book_club = Room.objects.get(name="Book Club")
    assert book_club.visibility == Room.Visibility.PRIVATE

    dora.locator(".room__side").get_by_label("Username").fill("bob")
    dora.get_by_role("button", name="Invite").click()
    expect(dora.locator(".flash")).to_contain_text("bob can now join Book Club.")
    expect(dora.locator(".members")).to_contain_text("bob")

    bob_page = site.page_for(bob, "/")
    room_item = bob_page.locator(".room-list__item", has_text="Book Club")
    expect(room_item.locator(".badge--private")).to_have_text("private")
    expect(bob_page.locator("#sidebar-rooms")).to_contain_text("Book Club")
    room_item.get_by_role("link", name="Book Club").click()
    expect(bob_page.locator("#connection")).to_have_text("connected")

    bob_page.locator("#composer-body").fill("Thanks for the invite, Dora!")
    bob_page.keyboard.press("Enter")
    expect(dora.locator("#messages .message__body")).to_have_text(["Thanks for the invite, Dora!"])
    dora.locator("#composer-body").fill("Welcome, Bob 📚")
    dora.keyboard.press("Enter")
    expect(bob_page.locator("#messages .message__body")).to_have_text(
        ["Thanks for the invite, Dora!", "Welcome, Bob 📚"]
    )

    outsider = site.page_for(charlie, "/")
    expect(outsider.locator("main")).not_to_contain_text("Book Club")
    response = outsider.goto(f"/rooms/{book_club.slug}/")
    assert response.status == 404
    expect(outsider.locator("body")).not_to_contain_text("Book Club")


def test_unread_badges_count_live_on_the_room_list(site, alice, bob, public_room):
    from rooms.services import room_join

    room_join(room=public_room, user=bob)
    bob_list = site.page_for(bob, "/")
    badge = bob_list.locator(f'.room-list [data-unread-room="{public_room.slug}"]')
    expect(badge).to_be_hidden()
    alice_page = site.page_for(alice, public_room.get_absolute_url())
    for text in ("one", "two"):
        alice_page.locator("#composer-body").fill(text)
        alice_page.keyboard.press("Enter")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("2 unread")
    expect(bob_list.locator(f'#sidebar-rooms [data-room="{public_room.slug}"] [data-unread]')).to_have_text("2 unread")

    bob_list.locator(".room-list__item", has_text=public_room.name).get_by_role("link").click()
    expect(bob_list.locator("#messages li.message")).to_have_count(2)
    expect(bob_list.locator(f'#sidebar-rooms [data-room="{public_room.slug}"] [data-unread]')).to_be_hidden()
