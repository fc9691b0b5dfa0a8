"""Search in the browser: the top bar's box, the highlighted result, and the room opened at the
message, with what came after it one click away and live messages still arriving."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from messaging.models import Message
from rooms.services import room_join
from tests.browser.kit import contrast_failures, message_bodies, send_over_websocket

pytestmark = [pytest.mark.browser, pytest.mark.processes]

TARGET = re.compile(r"\bmessage--target\b")


@pytest.fixture
def lobby(public_room, bob):
    room_join(room=public_room, user=bob)
    return public_room


def wait_until_persisted(room, count: int) -> None:
    """Search reads PostgreSQL: wait for the worker to write the messages."""
    deadline = time.monotonic() + 30
    while Message.objects.filter(room=room).count() < count:
        assert time.monotonic() < deadline, "the worker did not persist the messages"
        time.sleep(0.2)


def test_a_search_finds_the_highlighted_message_and_opens_the_room_scrolled_to_it(site, alice, bob, lobby):
    bodies = [f"message number {n}" for n in range(1, 121)]
    bodies[9] = "the kiwi <b>harvest</b> is in"
    send_over_websocket(site.port, alice, lobby.slug, bodies)
    wait_until_persisted(lobby, 120)

    page = site.page_for(bob, "/")
    page.get_by_role("searchbox", name="Search messages").fill("harvests")
    page.get_by_role("searchbox", name="Search messages").press("Enter")
    results = page.locator("#search-results li.search-result")
    expect(results).to_have_count(1)
    expect(results.locator(".search-result__excerpt")).to_have_text("the kiwi <b>harvest</b> is in")
    expect(results.locator("mark")).to_have_text(["harvest"])
    assert contrast_failures(page) == []

    results.get_by_role("link").click()
    expect(page).to_have_url(f"{site.url()}/rooms/{lobby.slug}/?around=10")
    target = page.locator("#seq-10")
    expect(target).to_have_class(TARGET)
    expect(target).to_be_in_viewport(ratio=1)
    expect(page.locator("#connection")).to_have_text("connected")
    assert message_bodies(page)[0] == "message number 1"
    expect(page.locator("#seq-120")).to_have_count(0)

    # A live message meanwhile follows the button; the messages between come when asked for.
    send_over_websocket(site.port, alice, lobby.slug, ["live after the search"])
    expect(page.locator("#seq-121")).to_be_attached()
    newer = page.get_by_role("button", name="Load newer messages")
    while newer.count():
        newer.click()
        page.wait_for_timeout(200)
    expect(page.locator("#load-newer")).to_have_count(0)
    assert message_bodies(page) == [*bodies, "live after the search"]


def test_a_link_to_a_message_off_the_page_opens_the_room_around_it(site, alice, bob, lobby):
    send_over_websocket(site.port, alice, lobby.slug, [f"line {n}" for n in range(1, 81)])
    page = site.page_for(bob, f"{lobby.get_absolute_url()}#seq-3")  # as a mention's link
    expect(page).to_have_url(f"{site.url()}/rooms/{lobby.slug}/?around=3#seq-3")
    expect(page.locator("#seq-3")).to_have_class(TARGET)
    expect(page.locator("#seq-3")).to_be_in_viewport(ratio=1)
