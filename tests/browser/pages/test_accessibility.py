"""The accessibility audit (issue 21): axe-core on every page (the landing page, log-in and
sign-up, the room list, a room, a direct message, search, settings, moderation,
notifications, a new room, a new direct message, the most clapped), in the light and the dark
theme, at desktop and phone sizes; no serious or critical violation, and every finding
printed in the test output. On the way, nothing scrolls sideways at 390 and 360 px, and the
theme follows the system unless the toggle chose one."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from messaging.models import Message
from rooms.models import Room
from rooms.services import direct_open, room_create, room_join
from tests.browser.axe import audit, failing, report
from tests.browser.kit import DESKTOP, PHONE, contrast, off_loop, send_over_websocket
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.processes]

SIZES = {"desktop": DESKTOP, "phone": PHONE}
NARROW = {"width": 360, "height": 740}


@pytest.fixture
def lived_in(site, alice, bob, make_user):
    """Rooms with messages of every kind (a reply, a link, formatting, a mention, claps), a
    private room, a direct message: what the pages show."""
    carol = make_user("carol")
    lobby = room_create(creator=alice, name="Lobby", topic="Say hello, ask anything")
    for user in (bob, carol):
        room_join(room=lobby, user=user)
    room_create(creator=alice, name="Design", topic="Pixels and words", visibility=Room.Visibility.PRIVATE)
    send_over_websocket(site.port, bob, lobby.slug, ["Morning all!", "Where are the **deploy** docs?"])
    send_over_websocket(
        site.port,
        alice,
        lobby.slug,
        [("At https://example.com/docs/deploy, thanks _Bob_", 2), "`make run` and __enjoy__"],
    )
    send_over_websocket(site.port, carol, lobby.slug, ["@alice can you look at the phone layout?"])
    direct = off_loop(direct_open, opener=carol, usernames=["alice"])
    send_over_websocket(site.port, carol, direct.slug, ["Got a minute?"])
    wait_until(lambda: Message.objects.filter(room=lobby).count() == 5)
    return {"lobby": lobby, "direct": direct}


def signed_in_pages(lived_in) -> list[tuple[str, str, str | None]]:
    lobby, direct = lived_in["lobby"], lived_in["direct"]
    return [
        ("room list", "/", None),
        ("room", lobby.get_absolute_url(), "#connection[data-state=connected]"),
        ("direct message", direct.get_absolute_url(), "#connection[data-state=connected]"),
        ("search", "/search/?q=deploy", "mark"),
        ("settings", "/accounts/settings/", None),
        ("moderation", f"/rooms/{lobby.slug}/moderation/", None),
        ("notifications", "/notifications/", None),
        ("notification settings", "/notifications/settings/", None),
        ("new room", "/rooms/new/", None),
        ("new direct message", "/direct/new/", None),
        ("most clapped", f"/rooms/{lobby.slug}/top/", None),
        ("profile", "/accounts/profile/", None),
        ("password change", "/accounts/password/change/", None),
        ("account deletion", "/accounts/delete/", None),
    ]


ANONYMOUS_PAGES = [
    ("landing", "/", None),
    ("log in", "/accounts/login/", None),
    ("sign up", "/accounts/signup/", None),
    ("password reset", "/accounts/password/reset/", None),
]


def no_sideways_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_page_passes_the_axe_audit_at_desktop_and_phone_sizes(site, alice, lived_in, theme, capsys):
    """One theme per test (the system's setting, emulated); both sizes; every page."""
    findings, outcome = [], []
    for size, viewport in SIZES.items():
        tabs = [
            (site.page_for(alice, None, viewport=viewport, color_scheme=theme), signed_in_pages(lived_in)),
            (site.anonymous(None, viewport=viewport, color_scheme=theme), ANONYMOUS_PAGES),
        ]
        for page, pages in tabs:
            for name, path, ready in pages:
                page.goto(path)
                if ready:
                    expect(page.locator(ready).first).to_be_visible()
                assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") == (theme == "dark")
                where = f"{name} ({path}), {theme}, {size}"
                states = [(where, None)]
                if name == "room" and size == "phone":  # what opens on a phone: the two drawers
                    states += [(f"{where}, rooms drawer open", "Rooms"), (f"{where}, details drawer open", "Details")]
                for label, opener in states:
                    if opener:
                        page.get_by_role("button", name=opener, exact=True).click()
                        expect(page.locator(".room[data-panel]")).to_have_count(1)
                    violations = audit(page)
                    findings.append(report(label, violations))
                    outcome.extend(f"{label}: [{v['impact']}] {v['id']}" for v in failing(violations))
                    if opener:
                        page.keyboard.press("Escape")
                        expect(page.locator(".room[data-panel]")).to_have_count(0)
                if size == "phone":
                    for width in (390, 360):
                        page.set_viewport_size({"width": width, "height": viewport["height"]})
                        assert no_sideways_scroll(page), f"{where}: scrolls sideways at {width} px"
                    page.set_viewport_size(viewport)
    with capsys.disabled():  # the results in the test output, whatever the outcome
        print("\n" + "\n".join(findings))
    assert not outcome, "serious or critical accessibility violations:\n" + "\n".join(outcome)


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def is_dark(page: Page) -> bool:
    return contrast(background(page), "rgb(0, 0, 0)") < 3


def test_the_theme_follows_the_system_and_the_toggle_overrides_it_on_every_page(site, alice, lived_in):
    page = site.page_for(alice, "/", color_scheme="dark")
    assert is_dark(page)
    toggle = page.locator("#theme-toggle")
    expect(toggle).to_have_accessible_name("Theme: Auto")
    page.emulate_media(color_scheme="light")
    assert not is_dark(page)  # "Auto" follows the system as it changes
    toggle.click()
    expect(toggle).to_have_accessible_name("Theme: Dark")
    assert is_dark(page)
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"

    # Kept: another page, another tab, after a reload; and a tab already open follows.
    other = page.context.new_page()
    other.goto(lived_in["lobby"].get_absolute_url())
    assert is_dark(other)
    expect(other.locator("#theme-toggle")).to_have_accessible_name("Theme: Dark")
    other.locator("#theme-toggle").click()
    expect(other.locator("#theme-toggle")).to_have_accessible_name("Theme: Light")
    assert not is_dark(other)
    expect(toggle).to_have_accessible_name("Theme: Light")  # the first tab, through `storage`
    assert not is_dark(page)
    page.emulate_media(color_scheme="dark")
    page.reload()
    assert not is_dark(page)  # light was chosen: the system's dark does not override it
    page.locator("#theme-toggle").click()
    expect(page.locator("#theme-toggle")).to_have_accessible_name("Theme: Auto")
    assert is_dark(page)
    assert page.evaluate("localStorage.getItem('pubsub-theme')") is None

    # Logged out too.
    anonymous = site.anonymous("/accounts/login/", color_scheme="dark")
    assert is_dark(anonymous)
    expect(anonymous.locator("#theme-toggle")).to_be_visible()
