"""Direct messages in the browser: alice opens a conversation with bob from a room's member
list, it appears in bob's sidebar at once, they talk live, and it shows under "Direct
messages" in both sidebars with its unread count."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from messaging.store.keys import RoomKeys
from pubsub_site.redis.client import get_redis
from rooms.models import Membership, Room
from tests.browser.kit import say

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def message(page, body: str):
    return page.locator("#messages li.message:not(.message--pending)").filter(
        has=page.locator(".message__body", has_text=body)
    )


def test_alice_opens_a_dm_with_bob_from_the_member_list_and_they_talk_live(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    expect(bob_page.locator("#connection")).to_have_text("connected")
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    alice_page.locator(".members").get_by_role("button", name="bob", exact=True).click()
    expect(alice_page.locator("h1.room__name")).to_have_text("bob")
    dm_url = alice_page.url
    assert re.search(r"/rooms/alice-bob-[0-9a-f]{8}/$", dm_url)  # the address names its people (issue 21)
    expect(alice_page.locator("#connection")).to_have_text("connected")
    expect(alice_page.locator("#sidebar-directs .sidebar__room--current a")).to_have_text("bob")

    # It appears in bob's sidebar at once, on the room he was in.
    bob_page.locator("#sidebar-directs").get_by_role("link", name="alice").click()
    expect(bob_page.locator("h1.room__name")).to_have_text("alice")
    assert bob_page.url == dm_url
    expect(bob_page.locator("#connection")).to_have_text("connected")

    say(alice_page, "Psst, Bob")
    expect(message(bob_page, "Psst, Bob")).to_be_visible()
    say(bob_page, "Hi Alice, only us here")
    expect(message(alice_page, "Hi Alice, only us here")).to_be_visible()
    for page, other in ((alice_page, "bob"), (bob_page, "alice")):
        expect(page.locator("#messages li.message:not(.message--pending)")).to_have_count(2)
        expect(page.locator("#sidebar-directs .sidebar__room a")).to_have_text([other])
        expect(page.locator("#sidebar-rooms .sidebar__room a")).to_have_text([lobby.name])

    # Bob's page has told the server he read both (his read marker), before he leaves.
    dm = Room.objects.get(slug=dm_url.rstrip("/").rsplit("/", 1)[-1])

    def bobs_read_marker() -> int:  # Redis first, PostgreSQL once the job wrote it (as unread counts do)
        in_redis = int(get_redis(dm.pk).hget(RoomKeys(dm.pk).reads, str(bob.pk)) or 0)
        return max(in_redis, Membership.objects.get(room=dm, user=bob).last_read_seq)

    for _ in range(100):
        if bobs_read_marker() >= 2:
            break
        time.sleep(0.05)
    assert bobs_read_marker() == 2

    # Away from it, bob sees its unread count in his sidebar, live.
    bob_page.goto(lobby.get_absolute_url())
    expect(bob_page.locator("#connection")).to_have_text("connected")
    say(alice_page, "one more thing")
    expect(bob_page.locator("#sidebar-directs [data-unread]")).to_have_text(re.compile(r"^1 unread"))
    expect(bob_page.locator("#sidebar-directs .sidebar__room--unread")).to_have_count(1)

    # From a message's author name too: the same conversation.
    alice_page.goto(lobby.get_absolute_url())
    expect(alice_page.locator("#connection")).to_have_text("connected")
    say(bob_page, "see you in private")
    message(alice_page, "see you in private").locator(".message__author").click()
    expect(alice_page).to_have_url(dm_url)
    assert site.problems == []
