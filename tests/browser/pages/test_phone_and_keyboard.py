"""The room on a phone and from the keyboard (issue 21): on a 390 x 844 screen one thing
scrolls (the messages), the composer stays in view, the rooms and the details are drawers and a
message shows its actions when tapped or long-pressed; from the keyboard the composer has the
focus, "/" brings it back, ArrowUp edits one's last message, the log is one tab stop with the
arrows inside, and Escape closes what is open."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.kit import PHONE, message, say, send_over_websocket

pytestmark = [pytest.mark.browser, pytest.mark.processes]


WHAT_HAS_FOCUS = """() => {
    const el = document.activeElement;
    return el.matches("li.message") ? `message ${el.dataset.seq}` : `${el.tagName} ${el.className}`;
}"""


def scrolls(page: Page, selector: str) -> bool:
    return page.locator(selector).evaluate("el => el.scrollHeight > el.clientHeight + 1")


def page_scrolls(page: Page) -> dict:
    return page.evaluate(
        """() => ({
            vertical: document.documentElement.scrollHeight > window.innerHeight + 1,
            sideways: document.documentElement.scrollWidth > window.innerWidth,
        })"""
    )


def test_it_shows_a_room_on_a_phone_with_one_scroll_and_the_composer_in_view(site, alice, bob, lobby):
    send_over_websocket(site.port, bob, lobby.slug, [f"Message number {n} with some words in it" for n in range(40)])
    page = site.page_for(alice, lobby.get_absolute_url(), viewport=PHONE, has_touch=True)
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("li.message")).to_have_count(40)

    assert page_scrolls(page) == {"vertical": False, "sideways": False}
    assert scrolls(page, "#messages")  # the one thing that scrolls
    composer = page.locator("#composer-body")
    expect(composer).to_be_in_viewport()
    # The keyboard takes half the screen (interactive-widget=resizes-content shrinks the layout
    # viewport): the composer stays above it, the page still does not scroll.
    page.set_viewport_size({"width": 390, "height": 420})
    expect(composer).to_be_in_viewport()
    assert page.evaluate("document.getElementById('composer-body').getBoundingClientRect().bottom <= innerHeight")
    assert page_scrolls(page) == {"vertical": False, "sideways": False}
    assert page.locator("meta[name=viewport]").get_attribute("content").endswith("interactive-widget=resizes-content")

    # "Log out" on one line.
    page.set_viewport_size({"width": 360, "height": 740})
    log_out = page.get_by_role("button", name="Log out")
    one_line = log_out.evaluate(
        "el => el.getBoundingClientRect().height < 1.6 * parseFloat(getComputedStyle(el).lineHeight)"
    )
    assert one_line
    assert page_scrolls(page)["sideways"] is False


def test_it_shows_a_message_s_actions_on_a_phone_only_when_tapped_or_long_pressed(site, alice, bob, lobby):
    send_over_websocket(site.port, bob, lobby.slug, ["Tap me", "Or hold me"])
    page = site.page_for(alice, lobby.get_absolute_url(), viewport=PHONE, has_touch=True)
    expect(page.locator("#connection")).to_have_text("connected")
    tap_me, hold_me = message(page, "Tap me"), message(page, "Or hold me")
    page.locator("#composer-body").blur()
    for li in (tap_me, hold_me):
        expect(li.locator("[data-action=reply]")).to_be_hidden()
        expect(li.locator("[data-action=report]")).to_be_hidden()

    tap_me.locator(".message__body").tap()
    expect(tap_me.locator("[data-action=reply]")).to_be_visible()
    expect(tap_me.locator("[data-action=clap]")).to_be_visible()
    expect(hold_me.locator("[data-action=reply]")).to_be_hidden()
    tap_me.locator("[data-action=reply]").tap()
    expect(page.locator("#composer-reply")).to_contain_text("Replying to bob: Tap me")

    tap_me.locator(".message__body").tap()  # a second tap hides them again
    expect(tap_me.locator("[data-action=report]")).to_be_hidden()

    # A long press (a touch held for half a second).
    hold_me.locator(".message__body").dispatch_event("pointerdown", {"pointerType": "touch", "isPrimary": True})
    expect(hold_me.locator("[data-action=report]")).to_be_visible()
    page.locator(".room__header").tap()  # a tap elsewhere puts them away
    expect(hold_me.locator("[data-action=report]")).to_be_hidden()


def test_the_rooms_and_the_details_are_drawers_on_a_phone_that_escape_closes(site, alice, bob, lobby):
    page = site.page_for(alice, lobby.get_absolute_url(), viewport=PHONE, has_touch=True)
    expect(page.locator("#connection")).to_have_text("connected")
    rooms, details = page.locator(".room .sidebar"), page.locator(".room__side")
    expect(rooms).to_be_hidden()
    expect(details).to_be_hidden()

    opener = page.get_by_role("button", name="Rooms", exact=True)
    opener.click()
    expect(rooms).to_be_visible()
    expect(rooms.get_by_role("link", name=lobby.name)).to_be_in_viewport()
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(rooms.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Escape")
    expect(rooms).to_be_hidden()
    expect(opener).to_be_focused()
    expect(opener).to_have_attribute("aria-expanded", "false")

    page.get_by_role("button", name="Details").click()
    expect(details).to_be_visible()
    expect(details.get_by_role("heading", name="Members")).to_be_in_viewport()
    page.mouse.click(10, 400)  # the backdrop, left of the drawer
    expect(details).to_be_hidden()
    assert page_scrolls(page) == {"vertical": False, "sideways": False}


def test_the_composer_has_the_focus_and_slash_brings_it_back(site, alice, bob, lobby):
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    composer = page.locator("#composer-body")
    expect(composer).to_be_focused()
    expect(page.locator("#composer-hint")).to_contain_text("/")

    page.locator("#topbar-search").focus()
    page.keyboard.type("a/b")  # in a field, "/" is a character
    expect(page.locator("#topbar-search")).to_have_value("a/b")
    page.locator(".room__name").click()
    page.keyboard.press("/")
    expect(composer).to_be_focused()
    expect(composer).to_have_value("")


def test_arrow_up_in_an_empty_composer_edits_one_s_last_message(site, alice, bob, lobby):
    send_over_websocket(site.port, bob, lobby.slug, ["Not mine"])
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    say(page, "First of mine")
    say(page, "Second of mine")
    expect(page.locator("li.message:not(.message--pending)")).to_have_count(3)
    send_over_websocket(site.port, bob, lobby.slug, ["Bob again, last"])
    expect(page.locator("li.message")).to_have_count(4)

    composer = page.locator("#composer-body")
    composer.fill("draft")
    composer.press("ArrowUp")  # not empty: the caret moves, nothing opens
    expect(page.locator(".message__editor")).to_have_count(0)
    composer.fill("")
    composer.press("ArrowUp")
    editor = message(page, "Second of mine").get_by_label("Edit message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Second of mine")
    page.keyboard.press("End")
    page.keyboard.type(", edited")
    page.keyboard.press("Enter")
    expect(message(page, "Second of mine, edited").locator(".message__edited")).to_be_visible()


def test_the_message_log_is_one_tab_stop_with_the_actions_on_the_arrows(site, alice, bob, lobby):
    send_over_websocket(site.port, bob, lobby.slug, ["First, see https://example.com/x", "Second", "Third"])
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("li.message")).to_have_count(3)

    # From the search box to the composer: every focus stop inside the log, in order.
    page.locator("#topbar-search").focus()
    inside = []
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "composer-body":
            break
        if page.evaluate("!!document.activeElement.closest('#messages')"):
            inside.append(page.evaluate(WHAT_HAS_FOCUS))
    else:
        pytest.fail("Tab never reached the composer")
    assert inside == ["message 3"], inside  # the newest message, once: not its five buttons

    third, second, first = message(page, "Third"), message(page, "Second"), message(page, "First")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Attach files")).to_be_focused()  # the composer's own
    page.keyboard.press("Shift+Tab")
    expect(third).to_be_focused()
    expect(third.locator(".message__tools")).to_have_css("opacity", "1")  # revealed by focus
    page.keyboard.press("ArrowUp")
    expect(second).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(second).to_be_focused()
    page.keyboard.press("Home")
    expect(first).to_be_focused()

    # Inside a message: its author, link, clap, reaction and tools in a row on the arrows.
    page.keyboard.press("ArrowRight")
    expect(first.locator(".message__author")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(first.locator(".message__body a")).to_be_focused()
    page.keyboard.press("ArrowRight")
    clap = first.locator("[data-action=clap]")
    expect(clap).to_be_focused()
    assert clap.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    page.keyboard.press("Enter")
    expect(clap.locator(".clap__total")).to_have_text("1")
    page.keyboard.press("ArrowRight")
    expect(first.locator("[data-action=react-open]")).to_be_focused()  # the emoji picker's button
    page.keyboard.press("ArrowRight")
    expect(first.locator("[data-action=reply]")).to_be_focused()
    page.keyboard.press("Escape")
    expect(first).to_be_focused()
    page.keyboard.press("Enter")  # Enter goes in as ArrowRight does
    expect(first.locator(".message__author")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(first).to_be_focused()
    # The roving stop stays where one left it.
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    expect(first).to_be_focused()
    assert page.locator("#messages [tabindex='0']").count() == 1

    # A message that arrives later is one stop too: no new tab stops inside the log.
    send_over_websocket(site.port, bob, lobby.slug, ["Fourth, with https://example.com/y"])
    fourth = message(page, "Fourth")
    expect(fourth).to_have_attribute("tabindex", "-1")
    expect(fourth.locator(".message__body a")).to_have_attribute("tabindex", "-1")
    assert page.locator("#messages [tabindex='0']").count() == 1
    page.keyboard.press("End")
    expect(fourth).to_be_focused()
