"""Notification settings in Chromium, over real web and worker processes: a room set to
"nothing" shows no badge and no notification for a new mention (while a room left at
"mentions" does), the change reaches the user's other tab live, a hidden tab shows a browser
notification that opens the room at the message, and the favicon and title count what waits.
The settings page and the room's control go to docs/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from rooms.models import Membership, Room
from rooms.services import direct_open, room_create
from tests.browser.kit import off_loop, send_over_websocket
from tests.browser.pages.test_pages import assert_page_is_clean, shoot
from tests.conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.processes]

QUIET = re.compile(r"\bsidebar__room--quiet\b")

# Chromium's own notifications cannot be seen from a test: this stands in for them, records
# each one made, and lets the test click it. The tab says it is hidden (a background tab).
HIDDEN_TAB_WITH_RECORDED_NOTIFICATIONS = """
Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => true });
Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get: () => "hidden" });
window.__notifications = [];
window.Notification = class {
  constructor(title, options) {
    this.title = title;
    this.options = options || {};
    this.onclick = null;
    window.__notifications.push(this);
  }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""

# A browser that was never asked: counts the requests for permission.
COUNTED_PERMISSION_REQUESTS = """
window.__permissionRequests = 0;
window.__permission = "default";
window.Notification = class {
  static get permission() { return window.__permission; }
  static requestPermission() {
    window.__permissionRequests += 1;
    window.__permission = "granted";
    return Promise.resolve("granted");
  }
};
"""


@pytest.fixture
def rooms(alice, bob):
    """Two private rooms of alice's that bob is in: Plans (left at the default) and Chatter."""
    made = {}
    for name in ("Plans", "Chatter"):
        room = room_create(creator=alice, name=name, visibility=Room.Visibility.PRIVATE)
        Membership.objects.create(room=room, user=bob)
        made[name] = room
    return made


def sidebar_item(page, room):
    return page.locator(f'.sidebar__room[data-room="{room.slug}"]')


def test_a_room_set_to_nothing_shows_no_badge_and_no_notification(site, alice, bob, rooms, lobby):
    plans, chatter = rooms["Plans"], rooms["Chatter"]
    settings_tab = site.page_for(bob, "/notifications/settings/")
    # In a third room: one reading Plans or Chatter would mark their messages read.
    room_tab = site.page_for(bob, lobby.get_absolute_url())
    expect(room_tab.locator("#connection")).to_have_attribute("data-state", "connected")

    row = settings_tab.locator(f'[data-notify-form="{chatter.slug}"]')
    row.get_by_role("button", name="Nothing").click()
    expect(row.get_by_role("button", name="Nothing")).to_have_attribute("aria-pressed", "true")
    # Live in bob's other tab: the room is quiet there too.
    expect(sidebar_item(room_tab, chatter)).to_have_class(QUIET)
    assert Membership.objects.get(room=chatter, user=bob).notify_level == "nothing"
    shoot(settings_tab, "notification-settings-desktop")

    send_over_websocket(site.port, alice, chatter.slug, ["@bob are you muted?"])
    # A mention in a room left at "mentions" comes through: what a muted room would have shown.
    other_tab = site.page_for(bob, "/")
    send_over_websocket(site.port, alice, rooms["Plans"].slug, ["@bob not muted here"])
    expect(other_tab.locator(".toast")).to_have_text("alice mentioned you: @bob not muted here")
    expect(sidebar_item(other_tab, plans).locator("[data-mention-badge]")).to_have_text("@1 unread mentions")

    # The muted room: no count, no mention badge, no toast, nothing on the notifications page.
    for tab in (room_tab, other_tab):
        expect(sidebar_item(tab, chatter).locator("[data-unread]")).to_be_hidden()
        expect(sidebar_item(tab, chatter).locator("[data-mention-badge]")).to_be_hidden()
        expect(tab.locator(".toast", has_text="are you muted")).to_have_count(0)
    # The room list too (other_tab is on it): Chatter quiet, without its count.
    expect(other_tab.locator(f'.room-list__item[data-room="{chatter.slug}"]')).to_have_class(
        re.compile(r"\broom-list__item--quiet\b")
    )
    expect(other_tab.locator(f'.room-list [data-unread-room="{chatter.slug}"]')).to_be_hidden()
    expect(other_tab.locator(f'.room-list [data-unread-room="{plans.slug}"]')).to_have_text("1 unread")
    assert "are you muted" not in site.page_for(bob, "/notifications/").content()
    assert site.problems == []


def test_the_rooms_control_snoozes_it_and_unmutes_it(site, alice, bob, rooms):
    plans = rooms["Plans"]
    page = site.page_for(bob, plans.get_absolute_url())
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    page.locator("#notify-menu summary").click()
    expect(page.locator("#notify-permission")).to_be_visible()  # the browser was not asked on load
    page.locator("#notify-menu").get_by_role("button", name="For 1 hour").click()

    expect(page.locator("#notify-menu [data-notify-label]")).to_have_text("Muted")
    expect(sidebar_item(page, plans)).to_have_class(QUIET)
    assert Membership.objects.get(room=plans, user=bob).snoozed_until() is not None
    page.locator("#notify-menu summary").click()
    expect(page.locator("#notify-menu [data-snoozed]")).to_be_visible()
    assert_page_is_clean(page)
    shoot(page, "notify-menu-desktop")

    page.locator("#notify-menu").get_by_role("button", name="Unmute").click()
    expect(page.locator("#notify-menu [data-notify-label]")).to_have_text("Mentions")
    expect(sidebar_item(page, plans)).not_to_have_class(QUIET)
    assert Membership.objects.get(room=plans, user=bob).notifications_snoozed_until is None
    assert site.problems == []


def test_permission_is_asked_only_from_the_in_page_prompt(site, bob, rooms):
    page = site.page_for(bob, None)
    page.context.add_init_script(COUNTED_PERMISSION_REQUESTS)
    page.goto("/notifications/settings/")

    prompt = page.locator("#notify-permission")
    expect(prompt).to_be_visible()
    assert page.evaluate("window.__permissionRequests") == 0

    prompt.get_by_role("button", name="Turn on browser notifications").click()

    expect(prompt.locator("[data-notify-permission-state]")).to_have_text("Browser notifications are on for this site.")
    assert page.evaluate("window.__permissionRequests") == 1
    assert site.problems == []


def test_a_hidden_tab_shows_a_browser_notification_that_opens_the_room_at_the_message(site, alice, bob, rooms):
    plans, chatter = rooms["Plans"], rooms["Chatter"]
    page = site.page_for(bob, None)
    page.context.add_init_script(HIDDEN_TAB_WITH_RECORDED_NOTIFICATIONS)
    page.goto(chatter.get_absolute_url())
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    plain_icon = page.locator('link[rel="icon"]').get_attribute("href")

    send_over_websocket(site.port, alice, plans.slug, ["warming up", "@bob the plan needs you"])

    wait_until(lambda: page.evaluate("window.__notifications.length") == 1)
    title, body, tag = page.evaluate(
        "(({title, options}) => [title, options.body, options.tag])(window.__notifications[0])"
    )
    assert (title, body) == ("alice mentioned you in Plans", "@bob the plan needs you")
    assert tag == f"{plans.slug}:2:mention"
    # The favicon and the title count the unread mention.
    expect(page.locator('link[rel="icon"]')).not_to_have_attribute("href", plain_icon)
    assert page.locator('link[rel="icon"]').get_attribute("href").startswith("data:image/svg+xml,")
    expect(page).to_have_title("@1 Chatter · pubsub")

    page.evaluate("window.__notifications[0].onclick()")

    page.wait_for_url(f"**{plans.get_absolute_url()}#seq-2")
    expect(page.locator("#seq-2")).to_have_class(re.compile(r"\bmessage--target\b"))
    assert site.problems == []


def test_a_direct_message_to_a_hidden_tab_notifies_and_counts_on_the_favicon(site, alice, bob, rooms):
    direct = off_loop(direct_open, opener=alice, usernames=["bob"])
    page = site.page_for(bob, None)
    page.context.add_init_script(HIDDEN_TAB_WITH_RECORDED_NOTIFICATIONS)
    page.goto(rooms["Plans"].get_absolute_url())
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    send_over_websocket(site.port, alice, direct.slug, ["lunch?"])

    wait_until(lambda: page.evaluate("window.__notifications.length") == 1)
    assert page.evaluate("[window.__notifications[0].title, window.__notifications[0].options.body]") == [
        "alice sent you a direct message",
        "lunch?",
    ]
    expect(page).to_have_title("@1 Plans · pubsub")
    assert site.problems == []
