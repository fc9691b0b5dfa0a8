"""Two people in one room, each in a browser of their own: messages both ways, pending
then sent, claps, who is online, who is typing, and what a message body may contain."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.sync_api import expect

from tests.browser.kit import HeldReplies, message, message_bodies, off_loop, say, send_over_websocket
from tests.netclient import NetClient, session_key_for

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def test_two_people_chat_live_both_ways(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")

    say(alice_page, "Hello Bob!")
    expect(message(bob_page, "Hello Bob!")).to_be_visible()
    say(bob_page, "Hi Alice, how are you?")
    expect(message(alice_page, "Hi Alice, how are you?")).to_be_visible()
    say(alice_page, "Fine, thanks.")

    expected = ["Hello Bob!", "Hi Alice, how are you?", "Fine, thanks."]
    for page in (alice_page, bob_page):
        expect(page.locator("#messages li.message:not(.message--pending)")).to_have_count(3)
        assert message_bodies(page) == expected
    # Relative time, the exact one on hover.
    time = message(bob_page, "Hello Bob!").locator(".message__time")
    expect(time).to_have_text("just now")
    expect(time).to_have_attribute("title", re.compile(r"\d{4} at \d\d:\d\d:\d\d"))
    # Grouped by author: alice's second message starts a group of its own after bob's.
    assert alice_page.locator("li.message--continued").count() == 0
    expect(message(alice_page, "Hello Bob!").locator(".message__author")).to_have_text("alice")


def test_the_sender_sees_a_message_pending_until_the_server_confirms_it(site, alice, bob, lobby):
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    alice_page = site.page_for(alice, None)
    held = HeldReplies(alice_page)
    alice_page.goto(lobby.get_absolute_url())
    expect(alice_page.locator("#connection")).to_have_text("connected")

    say(alice_page, "Is this thing on?")
    pending = message(alice_page, "Is this thing on?")
    expect(pending).to_have_class("message message--pending")
    expect(pending.locator(".message__time")).to_have_text("just now")
    # Stored and broadcast meanwhile: bob has it, alice has not heard back yet.
    expect(message(bob_page, "Is this thing on?")).to_be_visible()
    expect(pending).to_have_class("message message--pending")

    held.release()
    sent = message(alice_page, "Is this thing on?")
    expect(sent).not_to_have_class("message--pending")
    expect(sent).to_have_attribute("data-seq", "1")
    expect(sent).to_have_count(1)


def test_claps_show_live_in_the_other_browser(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    say(bob_page, "Clap if you agree")
    clap = message(alice_page, "Clap if you agree").locator("button.clap")
    expect(clap).to_be_visible()

    clap.click()
    clap.click()
    clap.click()
    expect(clap.locator(".clap__total")).to_have_text("3")
    expect(clap).to_have_attribute("aria-pressed", "true")
    bob_clap = message(bob_page, "Clap if you agree").locator("button.clap")
    expect(bob_clap.locator(".clap__total")).to_have_text("3")
    expect(bob_clap).to_have_attribute("aria-pressed", "false")
    # The clap board counts them on both sides.
    expect(bob_page.locator("#clap-board tr[data-user-id]").filter(has_text="alice")).to_contain_text("3")


def test_the_clap_board_names_a_member_who_is_not_online(site, alice, bob, lobby):
    # alice wrote and left: bob's board names her from the member list (not by the first thing
    # in her item there, her avatar's initial).
    send_over_websocket(site.port, alice, lobby.slug, ["Clap for me later"])
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    expect(bob_page.locator("#online .online__user", has_text="bob")).to_be_visible()
    expect(bob_page.locator("#online .online__user", has_text="alice")).to_have_count(0)
    message(bob_page, "Clap for me later").locator("button.clap").click()
    row = bob_page.locator(f'#clap-board tr[data-user-id="{alice.pk}"]')
    expect(row.locator("td").first).to_have_text("alice")


def test_the_online_list_and_the_typing_line_come_and_go(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    online = alice_page.locator("#online")
    expect(online.locator("li.online__user")).to_have_text(["alice"])

    bob_page = site.page_for(bob, lobby.get_absolute_url())
    expect(online.locator("li.online__user")).to_have_text(["alice", "bob"])
    expect(bob_page.locator("#online li.online__user")).to_have_text(["alice", "bob"])

    typing = alice_page.locator("#typing")
    expect(typing).to_be_empty()
    bob_page.locator("#composer-body").press_sequentially("I am writi", delay=20)
    expect(typing).to_have_text("bob is typing…")
    bob_page.locator("#composer-body").press_sequentially("ng", delay=20)
    bob_page.locator("#composer-body").press("Enter")
    expect(message(alice_page, "I am writing")).to_be_visible()
    expect(typing).to_be_empty(timeout=1500)  # the message ends the typing at once

    bob_page.wait_for_timeout(2000)  # the server passes one typing event per user every 2 s
    bob_page.locator("#composer-body").press_sequentially("and one more", delay=20)
    expect(typing).to_have_text("bob is typing…")
    expect(typing).to_be_empty(timeout=8000)  # gone on its own when bob stops

    bob_page.context.close()
    expect(online.locator("li.online__user")).to_have_text(["alice"], timeout=10000)


def test_the_composer_sends_on_enter_and_breaks_lines_on_shift_enter(site, alice, lobby):
    page = site.page_for(alice, lobby.get_absolute_url())
    box = page.locator("#composer-body")
    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    expect(page.locator("#messages li.message")).to_have_count(0)
    expect(box).to_have_value("first line\nsecond line")
    box.press("Enter")
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    sent = page.locator("#messages li.message:not(.message--pending) .message__body")
    expect(sent).to_have_text("first line\nsecond line")
    box.press("Enter")  # nothing to send
    expect(page.locator("#messages li.message")).to_have_count(1)


def test_links_become_links_and_nothing_else_becomes_html(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    long_word = "Supercalifragilistic" * 20
    bodies = [
        "See https://example.com/a?b=1&c=2. <b>not bold</b> <img src=x onerror=alert(1)>",
        long_word,
        "Party time 🎉👏🏽 ❤️",
    ]
    for body in bodies:
        say(alice_page, body)
    expect(alice_page.locator("#messages li.message:not(.message--pending)")).to_have_count(3)

    bob_page.reload()  # the server's rendering as well as the client's
    for page in (alice_page, bob_page):
        first = page.locator("#messages li.message .message__body").first
        link = first.locator("a")
        expect(link).to_have_count(1)
        expect(link).to_have_attribute("href", "https://example.com/a?b=1&c=2")
        expect(link).to_have_attribute("rel", "noopener nofollow")
        expect(link).to_have_text("https://example.com/a?b=1&c=2")
        expect(first.locator("b, img")).to_have_count(0)
        expect(first).to_have_text(bodies[0])
        assert message_bodies(page) == bodies
        # A long word wraps inside the message list instead of widening it.
        overflow = page.locator("#messages").evaluate("el => el.scrollWidth - el.clientWidth")
        assert overflow <= 0, overflow
        word_box = message(page, long_word[:40]).bounding_box()
        list_box = page.locator("#messages").bounding_box()
        assert word_box["x"] + word_box["width"] <= list_box["x"] + list_box["width"]


def test_another_users_message_with_my_client_id_does_not_replace_mine(site, alice, bob, lobby):
    """A client_id is its author's: bob's client replays the client_id of alice's message
    (every message frame shows it); his message is his own, and alice's stays on her page."""
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    expect(alice_page.locator("#connection")).to_have_text("connected")
    say(alice_page, "mine")
    expect(alice_page.locator("#messages li.message[data-seq='1']")).to_have_count(1)
    client_id = alice_page.locator("#messages li.message[data-seq='1']").get_attribute("data-client-id")
    key = session_key_for(bob)

    async def replay() -> None:
        client = await NetClient.open(site.port, key)
        try:
            await client.subscribe(lobby.slug)
            await client.send_message(lobby.slug, "his", client_id)
            ack = await client.recv_type("ack")
            assert ack["seq"] == 2
        finally:
            await client.close()

    off_loop(lambda: asyncio.run(replay()))
    expect(alice_page.locator("#messages li.message:not(.message--pending)")).to_have_count(2)
    assert message_bodies(alice_page) == ["mine", "his"]
