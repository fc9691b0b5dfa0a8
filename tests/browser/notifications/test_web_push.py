"""Web Push and the installable app in Chromium, against the site on real processes.

What is real: the manifest and the service worker as the site serves them, Chromium's own
installability checks (DevTools protocol ``Page.getInstallabilityErrors``), a push delivered to
the service worker by Chromium (``ServiceWorker.deliverPushMessage``) with the payload the server
makes, the notification the worker shows (``registration.getNotifications()``), and the worker's
click handler opening the room at the message.

What is simulated, and why: a headless Chromium has no notification on screen to click, so the
test calls the service worker's ``openFromNotification`` (the function its ``notificationclick``
listener calls, with the notification it shows) inside the worker itself. And Chromium's
``pushManager.subscribe`` needs Google's push service, which this sandbox cannot reach: a
subscription pointing at the test's own push service is stored instead, as the subscribe
endpoint would store it (webpush/tests/test_push_delivery.py covers that path up to the device).
"""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from messaging.models import Message
from messaging.store.online import users_online
from rooms.models import Membership
from tests.browser.kit import send_over_websocket
from tests.browser.pages.test_pages import shoot
from tests.conftest import wait_until
from webpush import services
from webpush.models import PushSubscription
from webpush.tests.pushservice import Device, start_push_service

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def service_worker_ready(page) -> str:
    return page.evaluate("async () => (await navigator.serviceWorker.ready).scope")


def registration_id(cdp, scope: str) -> str:
    """The service worker's registration id, as the DevTools protocol names it."""
    found: dict[str, str] = {}
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: found.update({r["scopeURL"]: r["registrationId"] for r in event["registrations"]}),
    )
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 10
    while scope not in found and time.monotonic() < deadline:
        cdp.send("Runtime.evaluate", {"expression": "1"})  # lets the events in
    assert scope in found, found
    return found[scope]


def close_and_wait_until_away(page, user) -> None:
    """Close the user's only tab, and wait until the worker sees them away.

    It waits first until the tab's socket is seen online. A web process writes a socket's
    opening to Redis half a second after it (messaging.realtime.online): a tab closed sooner
    was seen away before it was ever seen online, and could be written online just after, so
    a mention sent then was pushed to nobody (CI, stop 34), or a "nothing" passed unasked."""
    wait_until(lambda: user.pk in users_online(user_ids=[user.pk]))
    page.context.close()
    wait_until(lambda: user.pk not in users_online(user_ids=[user.pk]))


def test_the_site_is_installable_and_its_service_worker_controls_it(
    site, alice, playwright, browser_type_launch_args, tmp_path
):
    page = site.page_for(alice, "/")
    origin = site.url()
    assert service_worker_ready(page) == origin + "/"

    manifest = page.evaluate("async () => (await fetch(document.querySelector('link[rel=manifest]').href)).json()")
    assert manifest["name"] == "pubsub" and manifest["display"] == "standalone" and manifest["start_url"] == "/"
    assert {icon["sizes"] for icon in manifest["icons"]} == {"192x192", "512x512"}

    # Offline, a page comes from the worker's cache.
    page.reload()  # now controlled by the worker
    page.context.set_offline(True)
    page.goto("/search/?q=anything")
    expect(page.get_by_role("heading", name="You are offline")).to_be_visible()
    page.context.set_offline(False)

    # Chromium never offers to install from an incognito profile (Playwright's contexts are):
    # its checks run in a profile on disk.
    profile = playwright.chromium.launch_persistent_context(tmp_path / "profile", **browser_type_launch_args)
    try:
        tab = site.watch(profile.pages[0] if profile.pages else profile.new_page())
        tab.goto(origin + "/accounts/login/")
        service_worker_ready(tab)
        cdp = profile.new_cdp_session(tab)
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        app_manifest = cdp.send("Page.getAppManifest")
        assert app_manifest["errors"] == [] and app_manifest["url"] == origin + "/manifest.webmanifest"
    finally:
        profile.close()


def test_a_push_shows_a_notification_and_opening_it_shows_the_room_at_the_message(site, alice, bob, private_room):
    send_over_websocket(site.port, alice, private_room.slug, [f"filler {n}" for n in range(30)])
    send_over_websocket(site.port, alice, private_room.slug, ["@bob the numbers for Q3 are in"])
    wait_until(lambda: Message.objects.filter(room=private_room).count() == 31)
    message = Message.objects.get(room=private_room, body="@bob the numbers for Q3 are in")

    page = site.page_for(bob, "/accounts/settings/", permissions=["notifications"])
    origin = site.url()
    service_worker_ready(page)
    # The payload the server sends for this message (webpush.services).
    record = {"seq": message.seq, "author": {"id": alice.pk, "username": "alice"}, "body": message.body}
    payload = services.push_payload(
        [services.push_event(room=private_room, record=record, kind="mention", room_title=private_room.name)]
    )

    cdp = page.context.new_cdp_session(page)
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": registration_id(cdp, origin + "/"), "data": json.dumps(payload)},
    )
    shown = (
        "async () => (await (await navigator.serviceWorker.ready).getNotifications())"
        ".map(n => ({title: n.title, body: n.body, url: n.data.url, tag: n.tag}))"
    )
    wait_until(lambda: page.evaluate(shown), timeout=10)
    assert page.evaluate(shown) == [
        {
            "title": "#Secret Plans · alice",
            "body": "@bob the numbers for Q3 are in",
            "url": f"{origin}/rooms/secret-plans/#seq-{message.seq}",
            "tag": "room-secret-plans",
        }
    ]

    # The click: the worker's own handler, with the notification it shows.
    (worker,) = page.context.service_workers
    worker.evaluate(
        "async () => { const [n] = await self.registration.getNotifications(); await openFromNotification(n); }"
    )
    expect(page).to_have_url(f"{origin}/rooms/secret-plans/#seq-{message.seq}")
    target = page.locator("#messages li.message--target")
    expect(target).to_have_count(1)
    expect(target.locator(".message__body")).to_have_text("@bob the numbers for Q3 are in")
    expect(target).to_be_in_viewport()
    assert page.evaluate(shown) == []  # opened: closed


def test_the_settings_page_offers_notifications_on_this_device_and_asks_only_on_a_click(site, bob):
    page = site.page_for(bob, "/accounts/settings/")
    panel = page.locator("#push-settings")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("button", name="Turn on notifications on this device")).to_be_visible()
    expect(panel).to_contain_text("This device gets no notifications when no tab of pubsub is open.")
    assert page.evaluate("Notification.permission") == "default"  # nothing was asked on load


# Chromium's pushManager.subscribe registers with Google's push service, out of reach here: the
# page's PushManager answers with the test device's subscription instead (what the browser would
# hand the page, its endpoint at the test's push service). Everything after it is the site's.
STUB_PUSH_MANAGER = """
(() => {
  const device = %s;
  let current = null;
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    const base64 = btoa(String.fromCharCode(...key));
    window.subscribedWithKey = base64.replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
    current = {
      endpoint: device.endpoint,
      options: { applicationServerKey: key.buffer, userVisibleOnly: options.userVisibleOnly },
      toJSON: () => ({ endpoint: device.endpoint, expirationTime: null, keys: device.keys }),
      unsubscribe: async () => { current = null; return true; },
    };
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


def test_turned_on_in_the_settings_a_mention_is_pushed_until_the_settings_page_sets_the_room_to_nothing(
    site, settings, alice, bob, private_room
):
    push_service = start_push_service()
    try:
        device = Device(endpoint=push_service.endpoint("bob"))
        page = site.page_for(bob, None, permissions=["notifications"])
        stub = {"endpoint": device.endpoint, "keys": {"p256dh": device.p256dh, "auth": device.auth}}
        page.add_init_script(STUB_PUSH_MANAGER % json.dumps(stub))
        page.goto("/accounts/settings/")
        panel = page.locator("#push-settings")
        panel.get_by_role("button", name="Turn on notifications on this device").click()
        expect(panel).to_contain_text("Mentions and direct messages reach this device")
        expect(panel.get_by_role("button", name="Turn off notifications on this device")).to_be_visible()
        assert page.evaluate("window.subscribedWithKey") == settings.WEBPUSH_VAPID.public_key
        subscription = PushSubscription.objects.get()
        assert (subscription.user, subscription.endpoint, subscription.p256dh) == (bob, device.endpoint, device.p256dh)
        panel.scroll_into_view_if_needed()
        shoot(page, "push-settings-on-desktop")
        close_and_wait_until_away(page, bob)  # bob's last tab: away now

        send_over_websocket(site.port, alice, private_room.slug, ["@bob first, while the room is at mentions"])
        wait_until(lambda: len(push_service.received) == 1)
        payload = device.decrypt(push_service.received[0].body)
        assert payload["title"] == "#Secret Plans · alice"
        assert payload["body"] == "@bob first, while the room is at mentions"

        # Bob sets the room to "nothing" on the notification settings page, and leaves.
        settings_page = site.page_for(bob, "/notifications/settings/")
        nothing = settings_page.locator("li[data-room='secret-plans']").get_by_role("button", name="Nothing")
        nothing.click()
        expect(nothing).to_have_attribute("aria-pressed", "true")
        assert Membership.objects.get(room=private_room, user=bob).notify_level == "nothing"
        close_and_wait_until_away(settings_page, bob)

        send_over_websocket(site.port, alice, private_room.slug, ["@bob second, the room at nothing"])
        wait_until(lambda: Message.objects.filter(room=private_room).count() == 2)
        time.sleep(2)  # what the worker would have sent by now
        assert len(push_service.received) == 1
    finally:
        push_service.server.shutdown()
        push_service.server.server_close()


def test_after_a_mention_a_banner_offers_notifications_once(site, alice, bob, private_room):
    page = site.page_for(bob, "/")
    expect(page.locator("#push-banner")).to_have_count(0)  # never on load
    send_over_websocket(site.port, alice, private_room.slug, ["@bob welcome aboard"])
    banner = page.get_by_role("region", name="Notifications")
    expect(banner).to_be_visible()
    expect(banner.get_by_role("button", name="Turn on notifications on this device")).to_be_visible()
    shoot(page, "push-banner-desktop")
    banner.get_by_role("button", name="Not now").click()
    expect(page.locator("#push-banner")).to_have_count(0)

    send_over_websocket(site.port, alice, private_room.slug, ["@bob again"])
    expect(page.locator("#notifications-count")).to_have_text("2")
    expect(page.locator("#push-banner")).to_have_count(0)  # dismissed: not offered again
    assert page.evaluate("Notification.permission") == "default"
