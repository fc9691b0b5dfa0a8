"""The pages themselves: no CSP violation and no inline script or style, readable
contrast, keyboard-only use, a message list that is a log, a phone-sized layout, and the
screenshots in docs/screenshots/."""

from __future__ import annotations

import io

import pytest
from playwright.sync_api import Page, expect

from messaging.models import Message, Notification
from rooms.models import Membership, Room
from rooms.services import direct_open, room_create, room_join
from tests.browser.kit import DESKTOP, PHONE, contrast, contrast_failures, message, off_loop, send_over_websocket
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.processes]

from tests.browser.conftest import ROOT  # noqa: E402

SCREENSHOTS = ROOT / "docs" / "screenshots"


def test_the_contrast_function_agrees_with_wcag():
    assert round(contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)"), 1) == 21.0
    assert round(contrast("rgb(118, 118, 118)", "rgb(255, 255, 255)"), 2) == 4.54
    assert contrast("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)") == 1.0


def test_a_csp_violation_would_be_caught(site, alice):
    """The watch every page is under works: an inline script is refused, and reported."""
    page = site.page_for(alice, "/")
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "document.body.dataset.injected = 'yes'";
        document.body.append(script);
    }""")
    expect(page.locator("body")).not_to_have_attribute("data-injected", "yes")
    page.wait_for_timeout(200)
    assert any("Content Security Policy" in problem for problem in site.problems), site.problems
    site.problems.clear()


@pytest.fixture
def conversation(site, alice, bob, make_user):
    """A room that looks lived in: three people, a private room, claps, a link, a mention, a reply,
    some formatting, a direct message."""
    carol = make_user("carol")
    lobby = room_create(creator=alice, name="Lobby", topic="Say hello, ask anything")
    for user in (bob, carol):
        room_join(room=lobby, user=user)
    design = room_create(creator=alice, name="Design", topic="Pixels and words", visibility=Room.Visibility.PRIVATE)
    Membership.objects.create(room=design, user=bob)
    room_create(creator=bob, name="Random", topic="Anything goes")
    room_create(creator=carol, name="Release planning", topic="What ships on Friday")
    send_over_websocket(site.port, bob, lobby.slug, ["Morning all! ☀️", "Did everyone see the new deploy docs?"])
    send_over_websocket(
        site.port,
        alice,
        lobby.slug,
        [
            ("Yes, they are at https://example.com/docs/deploy — thanks *Bob* 👏", 2),  # a reply to bob's question
            "Shipping the chat UI today: `make run` and _enjoy_.",
        ],
    )
    send_over_websocket(site.port, carol, lobby.slug, ["@alice can you look at the phone layout?"])
    send_over_websocket(site.port, bob, lobby.slug, ["Looks great on mine.\nTwo lines, even."])
    send_over_websocket(site.port, bob, design.slug, ["New logo drafts are in."])
    # A direct message from carol, unread: the sidebar lists it under "Direct messages".
    direct = off_loop(direct_open, opener=carol, usernames=["alice"])
    send_over_websocket(site.port, carol, direct.slug, ["Got a minute?"])
    wait_until(lambda: Notification.objects.filter(user=alice).exists())
    # Search reads PostgreSQL: the worker has written the lobby's messages.
    wait_until(lambda: Message.objects.filter(room=lobby).count() == 6)
    return {"lobby": lobby, "design": design, "carol": carol, "direct": direct}


def assert_page_is_clean(page: Page) -> None:
    """No inline script or style attribute in the markup; readable colours."""
    expect(page.locator("script:not([src])")).to_have_count(0)
    expect(page.locator("[style]")).to_have_count(0)
    failures = contrast_failures(page)
    assert not failures, f"{page.url}:\n" + "\n".join(failures)


def shoot(page: Page, name: str) -> None:
    """Write docs/screenshots/<name>.png, unless what is there looks the same (text
    rasterises a shade differently from run to run: no churn in git for that)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    picture = page.screenshot(animations="disabled", caret="hide")
    path = SCREENSHOTS / f"{name}.png"
    if not (path.exists() and looks_the_same(path.read_bytes(), picture)):
        path.write_bytes(picture)


def looks_the_same(old: bytes, new: bytes) -> bool:
    if old == new:
        return True
    try:
        from PIL import Image, ImageChops  # Pillow (requirements.txt, for avatars); without it, any change is written
    except ImportError:
        return False
    with Image.open(io.BytesIO(old)) as a, Image.open(io.BytesIO(new)) as b:
        if a.size != b.size:
            return False
        _, high = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).convert("L").getextrema()
        return high <= 16


def test_every_main_page_is_clean_and_gets_its_screenshots(django_db_reset_sequences, site, alice, bob, conversation):
    # (Sequences reset: the same ids every run, so the same avatar colours in the screenshots.)
    lobby, carol, direct = conversation["lobby"], conversation["carol"], conversation["direct"]
    pages = [
        ("room-list", "/", None),
        ("room", lobby.get_absolute_url(), "#connection[data-state=connected]"),
        ("direct", direct.get_absolute_url(), "#connection[data-state=connected]"),
        ("search", "/search/?q=deploy", "mark"),
        ("moderation", f"/rooms/{lobby.slug}/moderation/", None),
        ("notifications", "/notifications/", None),
        ("new-room", "/rooms/new/", None),
        ("most-clapped", f"/rooms/{lobby.slug}/top/", None),
    ]
    for size_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        bob_page = site.page_for(bob, lobby.get_absolute_url(), viewport=viewport)
        expect(bob_page.locator("#connection")).to_have_text("connected")
        alice_page = site.page_for(alice, None, viewport=viewport, has_touch=viewport is PHONE)
        for name, path, ready in pages:
            alice_page.goto(path)
            if ready:
                expect(alice_page.locator(ready)).to_be_visible()
            if name == "room":
                # Some life in the room: claps, someone typing, everyone online.
                claps = alice_page.locator("li.message", has_text="Morning all").locator("button.clap")
                if viewport is DESKTOP:
                    for _ in range(3):
                        claps.click()
                expect(claps.locator(".clap__total")).to_have_text("3")
                expect(alice_page.locator("#online li.online__user")).to_have_count(2)
                bob_page.locator("#composer-body").press_sequentially("Typing", delay=10)
                expect(alice_page.locator("#typing")).to_have_text("bob is typing…")
                alice_page.locator("#composer-body").focus()
                expect(alice_page.locator(".sidebar__room--current [data-unread]")).to_be_hidden()  # read
            assert_page_is_clean(alice_page)
            if name not in {"new-room", "most-clapped"}:
                shoot(alice_page, f"{name}-{size_name}")
        # The phone's drawer of rooms, and the main pages in the dark theme (the system's setting).
        alice_page.goto(lobby.get_absolute_url())
        expect(alice_page.locator("#connection")).to_have_text("connected")
        if viewport is PHONE:
            alice_page.get_by_role("button", name="Rooms", exact=True).click()
            expect(alice_page.locator(".room .sidebar")).to_be_visible()
            shoot(alice_page, "room-phone-rooms")
            alice_page.keyboard.press("Escape")
            message_li = message(alice_page, "Did everyone see")
            message_li.locator(".message__body").tap()
            expect(message_li.locator("[data-action=reply]")).to_be_visible()
            shoot(alice_page, "room-phone-actions")
        alice_page.emulate_media(color_scheme="dark")
        for name, path, ready in pages[:4]:  # the room list, a room, a direct message, search
            alice_page.goto(path)
            if ready:
                expect(alice_page.locator(ready)).to_be_visible()
            assert alice_page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
            assert_page_is_clean(alice_page)
            shoot(alice_page, f"{name}-{size_name}-dark")
        alice_page.emulate_media(color_scheme="light")
        bob_page.locator("#composer-body").fill("")
        newcomer = site.anonymous("/accounts/signup/", viewport=viewport)
        assert_page_is_clean(newcomer)
        shoot(newcomer, f"signup-{size_name}")
        newcomer.goto("/accounts/login/")
        assert_page_is_clean(newcomer)
        # Nothing scrolls sideways on a phone.
        for page in (alice_page, newcomer):
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url
    assert carol  # a third voice in the screenshots
    assert not site.problems, site.problems


def test_the_room_works_with_the_keyboard_alone(site, alice, bob, public_room):
    room_join(room=public_room, user=bob)
    send_over_websocket(site.port, bob, public_room.slug, ["Tab to me and clap"])
    page = site.page_for(alice, public_room.get_absolute_url())
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("li.message")).to_have_count(1)

    log = page.locator("#messages-log")
    expect(log).to_have_attribute("role", "log")
    expect(log).to_have_attribute("aria-label", f"Messages in {public_room.name}")
    expect(page.locator("#composer-body")).to_have_accessible_name(f"Message {public_room.name}")

    # The composer has the focus; before it, its "Attach files" button, then the log, one stop
    # (tests/browser/pages/test_phone_and_keyboard.py).
    expect(page.locator("#composer-body")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Attach files")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.locator("li.message")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message .message__author")).to_be_focused()
    page.keyboard.press("ArrowRight")
    clap = page.locator("li.message button.clap")
    expect(clap).to_be_focused()
    assert clap.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    expect(page.locator("li.message .message__tools")).to_have_css("opacity", "1")  # revealed by focus
    page.keyboard.press("Enter")
    page.keyboard.press("Space")
    expect(clap.locator(".clap__total")).to_have_text("2")
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message [data-action=react-open]")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message [data-action=reply]")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message .message__tools [data-action=open-thread]")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message [data-action=delete]")).to_be_focused()  # alice moderates the room
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message [data-action=pin]")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.locator("li.message [data-action=report]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#report-dialog")).to_be_visible()
    expect(page.locator("#report-reason")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#report-dialog")).to_be_hidden()

    page.locator("#composer-body").focus()
    page.keyboard.type("Sent from the keyboard")
    page.keyboard.press("Enter")
    expect(page.locator("li.message:not(.message--pending)", has_text="Sent from the keyboard")).to_be_visible()
    # The author's own tools: Edit opens an editor, Escape closes it.
    mine = page.locator("li.message", has_text="Sent from the keyboard")
    mine.get_by_role("button", name="Edit").focus()
    page.keyboard.press("Enter")
    editor = mine.get_by_label("Edit message")
    expect(editor).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.type(", edited")
    page.keyboard.press("Enter")
    expect(mine.locator(".message__body")).to_have_text("Sent from the keyboard, edited")
    expect(mine.locator(".message__edited")).to_be_visible()
