"""Replies and formatting in Chromium: a reply shows a quote of its original that leads to it
(on the page, or the page around it), follows the original's deletion live, and a formatted
message looks the same live (static/js/format.js) as after a reload (messaging/formatting.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from messaging.tests.test_formatting import CASES
from tests.browser.kit import PHONE, HeldReplies, message, say, send_over_websocket

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def in_view(page, locator) -> bool:
    return locator.evaluate(
        """(el) => {
            const box = el.getBoundingClientRect(), list = document.getElementById("messages").getBoundingClientRect();
            return box.top >= list.top && box.bottom <= list.bottom;
        }"""
    )


def test_a_reply_quotes_its_original_and_the_quote_leads_to_it(site, alice, bob, lobby):
    send_over_websocket(
        site.port, alice, lobby.slug, ["Who has the *deploy* notes?", *[f"chatter {n}" for n in range(30)]]
    )
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")

    original = message(bob_page, "Who has the deploy notes?")
    original.scroll_into_view_if_needed()
    original.hover()
    original.locator("[data-action=reply]").click()
    expect(bob_page.locator("#composer-reply")).to_contain_text("Replying to alice: Who has the *deploy* notes?")
    expect(bob_page.locator("#composer-body")).to_be_focused()
    say(bob_page, "I do, _right here_")
    expect(bob_page.locator("#composer-reply")).to_be_hidden()

    for page in (alice_page, bob_page):
        reply = message(page, "I do, right here")
        expect(reply).not_to_have_class("message message--pending")
        quote = reply.locator("a.message__reply")
        expect(quote).to_have_text("alice Who has the *deploy* notes?")
        expect(quote).to_have_attribute("data-reply-to", "1")
        expect(reply.locator(".message__body em")).to_have_text("right here")
    page = alice_page
    original = message(page, "Who has the deploy notes?")
    assert not in_view(page, original)
    message(page, "I do, right here").locator("a.message__reply").click()
    expect(original).to_have_class("message message--target")
    assert in_view(page, original)

    # After a reload, the server renders the same quote.
    page.reload()
    quote = message(page, "I do, right here").locator("a.message__reply")
    expect(quote).to_have_text("alice Who has the *deploy* notes?")
    # The original deleted: the quote says so, live and after a reload.
    bob_page.reload()
    expect(bob_page.locator("#connection")).to_have_text("connected")
    original = message(page, "Who has the deploy notes?")
    original.hover()
    page.once("dialog", lambda dialog: dialog.accept())
    original.locator("[data-action=delete]").click()
    for tab in (page, bob_page):
        expect(message(tab, "I do, right here").locator("a.message__reply")).to_have_text("Original message deleted")
    bob_page.reload()
    expect(message(bob_page, "I do, right here").locator("a.message__reply")).to_have_text("Original message deleted")


def test_a_reply_s_quote_reads_the_same_for_its_sender_as_for_everyone(site, alice, bob, lobby):
    """The quote is the original as written (protocol.wire.reply_excerpt), not its rendering:
    the sender's "Replying to" line and pending message included, before the server answers."""
    written = "**Bold** move,\n  `code` and _more_"
    quoted = "**Bold** move, `code` and _more_"
    send_over_websocket(site.port, alice, lobby.slug, [written])
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, None)
    held = HeldReplies(bob_page)
    bob_page.goto(lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    original = message(bob_page, "Bold move")
    original.hover()
    original.locator("[data-action=reply]").click()
    expect(bob_page.locator("#composer-reply")).to_contain_text(f"Replying to alice: {quoted}")
    say(bob_page, "Agreed")
    pending = bob_page.locator("li.message--pending")
    expect(pending.locator("a.message__reply")).to_have_text(f"alice {quoted}")
    expect(message(alice_page, "Agreed").locator("a.message__reply")).to_have_text(f"alice {quoted}")
    held.release()
    expect(bob_page.locator("li.message--pending")).to_have_count(0)
    expect(message(bob_page, "Agreed").locator("a.message__reply")).to_have_text(f"alice {quoted}")


def test_a_link_moves_whole_to_the_next_line_rather_than_breaking_inside(site, alice, bob, lobby):
    # Words of every length before a link shorter than a line: wherever a line ends, the link
    # starts the next one whole (it would be cut at the line's end with overflow-wrap: anywhere
    # or word-break: break-all). A link wider than the line still breaks, inside the message.
    link = "https://example.com/docs/deploy"
    bodies = [f"{'word ' * n}{link} after" for n in range(3, 15)]
    long_link = "https://example.com/" + "segment-" * 30
    send_over_websocket(site.port, alice, lobby.slug, [*bodies, long_link])
    page = site.page_for(bob, lobby.get_absolute_url(), viewport=PHONE)
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("li.message")).to_have_count(len(bodies) + 1)
    lines = page.locator("#messages .message__body a").evaluate_all(
        "(links) => links.map((a) => a.getClientRects().length)"
    )
    assert lines[:-1] == [1] * len(bodies), lines
    assert lines[-1] > 1
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    body = page.locator("#messages .message__body").last
    assert body.evaluate("el => el.scrollWidth <= el.clientWidth")


def test_a_quote_whose_original_is_not_on_the_page_opens_the_page_around_it(site, alice, bob, lobby):
    send_over_websocket(site.port, alice, lobby.slug, ["The very first word", *[f"filler {n}" for n in range(80)]])
    send_over_websocket(site.port, bob, lobby.slug, [("Back to the start", 1)])
    page = site.page_for(alice, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    expect(message(page, "The very first word")).to_have_count(0)  # 50 messages: not on the page
    quote = message(page, "Back to the start").locator("a.message__reply")
    expect(quote).to_have_text("alice The very first word")
    quote.click()
    expect(page).to_have_url(f"{site.url()}{lobby.get_absolute_url()}?around=1#seq-1")
    original = message(page, "The very first word")
    expect(original).to_have_class("message message--target")
    assert in_view(page, original)


FORMATTED = "\n".join(
    [
        "*Bold*, _italic_, `code` and https://example.com/a_b?c=1&d=2.",
        "> a quoted *line*",
        "```",
        "def f(x): return x * 2  # <not html>",
        "```",
        "<script>alert(1)</script> **bold too** __and this__ snake_case_name",
    ]
)


def test_formatting_is_the_same_live_and_after_a_reload(site, alice, bob, lobby):
    alice_page = site.page_for(alice, lobby.get_absolute_url())
    bob_page = site.page_for(bob, lobby.get_absolute_url())
    for page in (alice_page, bob_page):
        expect(page.locator("#connection")).to_have_text("connected")
    say(alice_page, FORMATTED)
    bodies = []
    for page in (alice_page, bob_page):
        sent = page.locator("#messages li.message:not(.message--pending) .message__body")
        expect(sent).to_have_count(1)
        expect(sent.locator("strong")).to_have_text(["Bold", "line", "bold too", "and this"])
        expect(sent.locator("em")).to_have_text("italic")
        expect(sent.locator("blockquote strong")).to_have_text("line")
        expect(sent.locator("pre code")).to_have_text("def f(x): return x * 2  # <not html>")
        expect(sent.locator("a")).to_have_attribute("href", "https://example.com/a_b?c=1&d=2")
        expect(sent.locator("script")).to_have_count(0)
        bodies.append(sent.inner_html())
    live = bodies[0]
    assert bodies[1] == live
    for page in (alice_page, bob_page):
        page.reload()
        reloaded = page.locator("#messages li.message .message__body")
        expect(reloaded).to_have_count(1)
        assert reloaded.inner_html() == live
    # Editing starts from what was written, not from the rendering.
    mine = alice_page.locator("#messages li.message")
    mine.hover()
    mine.locator("[data-action=edit]").click()
    expect(mine.locator(".message__editor textarea")).to_have_value(FORMATTED)


def test_every_shared_formatting_case_renders_the_same_live_and_after_a_reload(site, alice, bob, lobby):
    """The cases of messaging/tests/formatting_cases.json through the page's own paths: live,
    static/js/format.js builds the elements (toDOM, not the HTML string the Node test checks);
    after a reload the server's template renders them. The two DOMs must be equal."""
    cases = [case for case in CASES if case["input"].strip()]
    page = site.page_for(bob, lobby.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    send_over_websocket(site.port, alice, lobby.slug, [case["input"] for case in cases])
    bodies = page.locator("#messages li.message .message__body")
    expect(bodies).to_have_count(len(cases))
    live = bodies.evaluate_all("(els) => els.map((el) => el.innerHTML)")
    # The client's renderer gives each case the server's HTML (compared as DOM: the browser
    # serialises entities its own way).
    same_as_server = page.evaluate(
        """(cases) => cases.map(([input, html]) => {
            const live = document.createElement("div"), server = document.createElement("div");
            PubSubFormat.fill(live, input);
            server.innerHTML = html;
            live.normalize();  // toDOM may leave adjacent text nodes where the parser makes one
            return live.isEqualNode(server);
        })""",
        [[case["input"], case["html"]] for case in cases],
    )
    assert [case["name"] for case, same in zip(cases, same_as_server, strict=True) if not same] == []
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    expect(bodies).to_have_count(len(cases))
    reloaded = bodies.evaluate_all("(els) => els.map((el) => el.innerHTML)")
    different = [
        f"{case['name']}:\n  live     {a!r}\n  reloaded {b!r}"
        for case, a, b in zip(cases, live, reloaded, strict=True)
        if a != b
    ]
    assert not different, "\n".join(different)
    assert site.problems == []
