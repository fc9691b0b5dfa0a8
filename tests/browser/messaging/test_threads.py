"""Threads in Chromium: a thread reply seen live by a second person in the thread panel, with the
count under the root updated and the unread count of a follower; "Also send to the room" shows it
in the timeline; the panel takes the whole screen on a phone; all of it as it was after a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.axe import audit, failing, report
from tests.browser.kit import PHONE, message, send_over_websocket

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def reply_in_thread(page, text: str, *, also_in_room: bool = False) -> None:
    page.locator("#thread-composer-body").fill(text)
    if also_in_room:
        page.locator("#thread-also-in-room").check()
    page.locator("#thread-composer-body").press("Enter")


def test_a_thread_reply_is_seen_live_in_the_panel_and_counted_under_its_root(site, alice, bob, lobby):
    send_over_websocket(site.port, alice, lobby.slug, ["Who has the deploy notes?", "Lunch at noon"])
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")

    # alice watches the room; bob opens the root's thread and answers in it.
    root = message(bob_page, "Who has the deploy notes?")
    root.hover()
    root.locator("[data-action=open-thread]").click()
    expect(bob_page.locator("#thread-panel")).to_be_visible()
    expect(bob_page.locator("#thread-root")).to_contain_text("Who has the deploy notes?")
    expect(bob_page.locator("#thread-count")).to_have_text("No replies yet")
    reply_in_thread(bob_page, "I do, in the wiki")
    expect(bob_page.locator("#thread-replies li.message:not(.message--pending)")).to_contain_text("I do, in the wiki")

    # Not in the timeline; the count under the root, live for both, and alice (the root's
    # author, who follows her thread) has one unread reply.
    for page in (alice_page, bob_page):
        expect(message(page, "Who has the deploy notes?").locator(".thread-summary__count")).to_have_text("1 reply")
        expect(message(page, "I do, in the wiki")).to_be_hidden()
    expect(alice_page.locator("#threads-unread")).to_have_text("1")

    # alice opens the thread from the summary: the reply is there, her unread count clears, and
    # bob's next reply comes live into her panel.
    message(alice_page, "Who has the deploy notes?").locator(".thread-summary").click()
    expect(alice_page.locator("#thread-replies")).to_contain_text("I do, in the wiki")
    expect(alice_page.locator("#threads-unread")).to_be_hidden()
    reply_in_thread(bob_page, "Page 3, to be precise")
    expect(alice_page.locator("#thread-replies li.message")).to_have_count(2)
    expect(alice_page.locator("#thread-replies li.message").last).to_contain_text("Page 3, to be precise")
    expect(alice_page.locator("#thread-count")).to_have_text("2 replies")
    expect(message(alice_page, "Who has the deploy notes?").locator(".thread-summary__count")).to_have_text("2 replies")
    expect(alice_page.locator("#threads-unread")).to_be_hidden()

    # "Also send to the room": the reply shows in the timeline too, marked as from a thread.
    reply_in_thread(alice_page, "Thanks, found it", also_in_room=True)
    for page in (alice_page, bob_page):
        shown = message(page, "Thanks, found it")
        expect(shown).to_be_visible()
        expect(shown.locator(".message__in-thread")).to_have_text("Replied in a thread")
        expect(message(page, "Who has the deploy notes?").locator(".thread-summary__count")).to_have_text("3 replies")

    # After a reload, the server renders the same: the summary, the hidden replies, the shown one.
    bob_page.reload()
    expect(bob_page.locator("#connection")).to_have_text("connected")
    summary = message(bob_page, "Who has the deploy notes?").locator(".thread-summary")
    expect(summary.locator(".thread-summary__count")).to_have_text("3 replies")
    expect(message(bob_page, "I do, in the wiki")).to_be_hidden()
    expect(message(bob_page, "Thanks, found it")).to_be_visible()
    summary.click()
    expect(bob_page.locator("#thread-replies li.message")).to_have_count(3)
    # The open panel passes the accessibility audit, and Escape closes it.
    violations = audit(bob_page)
    assert failing(violations) == [], report("the thread panel", violations)
    bob_page.locator("#thread-composer-body").press("Escape")
    expect(bob_page.locator("#thread-panel")).to_be_hidden()
    # The threads one follows: bob replied in alice's thread.
    bob_page.locator("#threads-button").click()
    expect(bob_page.locator("#thread-list .thread-item")).to_have_count(1)
    expect(bob_page.locator("#thread-list .thread-item")).to_contain_text("Who has the deploy notes?")
    assert site.problems == []


def test_the_thread_panel_takes_the_whole_screen_on_a_phone(site, alice, bob, lobby):
    send_over_websocket(site.port, alice, lobby.slug, ["A question for the phone"])
    page = site.page_for(bob, lobby.get_absolute_url(), viewport=PHONE, has_touch=True, is_mobile=True)
    expect(page.locator("#connection")).to_have_text("connected")
    root = message(page, "A question for the phone")
    root.click()  # a tap shows a message's actions on a phone
    root.locator("[data-action=open-thread]").click()
    panel = page.locator("#thread-panel")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box is not None and box["x"] == 0 and box["width"] == PHONE["width"] and box["height"] >= PHONE["height"] - 1
    reply_in_thread(page, "Answered from a phone")
    expect(page.locator("#thread-replies li.message:not(.message--pending)")).to_contain_text("Answered from a phone")
    page.locator("[data-action=thread-close]").click()
    expect(panel).to_be_hidden()
    expect(message(page, "A question for the phone").locator(".thread-summary__count")).to_have_text("1 reply")
    assert site.problems == []
