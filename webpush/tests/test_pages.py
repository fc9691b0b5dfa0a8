"""The installable app's files, the subscription endpoints, and the VAPID keys' configuration."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.urls import reverse

from pubsub_site.vapid import vapid_keys_from_env, vapid_pair_new, vapid_public_of
from webpush.models import PushSubscription
from webpush.tests.pushservice import Device

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def subscription_json(device: Device) -> str:
    return json.dumps(
        {"endpoint": device.endpoint, "expirationTime": None, "keys": {"p256dh": device.p256dh, "auth": device.auth}}
    )


def test_the_manifest_names_the_app_and_its_icons(client):
    response = client.get("/manifest.webmanifest")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/manifest+json"
    manifest = response.json()
    assert manifest["name"] == "pubsub" and manifest["short_name"] == "pubsub"
    assert manifest["start_url"] == reverse("room-list") and manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] and manifest["background_color"]
    sizes = {(icon["sizes"], icon["purpose"]) for icon in manifest["icons"]}
    assert sizes == {("192x192", "any"), ("512x512", "any"), ("192x192", "maskable"), ("512x512", "maskable")}


def test_every_page_links_the_manifest_and_registers_the_service_worker(client):
    page = client.get(reverse("login")).content.decode()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page
    assert 'data-sw="/sw.js"' in page and "js/pwa.js" in page


def test_the_service_worker_is_served_at_the_root_for_the_whole_site(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/"
    assert response["Cache-Control"] == "no-cache"
    body = response.content.decode()
    assert 'const OFFLINE_URL = "/offline/";' in body
    assert 'addEventListener("push"' in body and 'addEventListener("notificationclick"' in body


def test_the_offline_page_says_nothing_about_whoever_is_signed_in(bob_client):
    page = bob_client.get("/offline/").content.decode()
    assert "You are offline" in page
    assert "bob" not in page  # cached, and shown to whoever uses this browser later


def test_a_signed_in_user_stores_the_subscription_of_their_browser(bob_client, bob):
    device = Device(endpoint="https://push.example.net/send/abc")
    response = bob_client.post(
        reverse("push-subscribe"), subscription_json(device), content_type="application/json", HTTP_USER_AGENT="Firefox"
    )
    assert response.status_code == 201
    subscription = PushSubscription.objects.get()
    assert (subscription.user, subscription.endpoint, subscription.p256dh, subscription.auth) == (
        bob,
        device.endpoint,
        device.p256dh,
        device.auth,
    )
    assert subscription.user_agent == "Firefox"
    # The same browser again: still one row.
    assert (
        bob_client.post(
            reverse("push-subscribe"), subscription_json(device), content_type="application/json"
        ).status_code
        == 201
    )
    assert PushSubscription.objects.count() == 1


def test_a_browser_subscribed_by_someone_else_becomes_the_new_users(client, alice, bob):
    device = Device(endpoint="https://push.example.net/send/shared")
    client.force_login(alice)
    client.post(reverse("push-subscribe"), subscription_json(device), content_type="application/json")
    client.force_login(bob)
    client.post(reverse("push-subscribe"), subscription_json(device), content_type="application/json")
    assert list(PushSubscription.objects.values_list("user__username", flat=True)) == ["bob"]


def test_an_anonymous_visitor_cannot_subscribe(client):
    device = Device(endpoint="https://push.example.net/send/abc")
    response = client.post(reverse("push-subscribe"), subscription_json(device), content_type="application/json")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps([]),
        json.dumps({"endpoint": "javascript:alert(1)", "keys": {"p256dh": "x", "auth": "y"}}),
        json.dumps({"endpoint": "https://push.example.net/a"}),
        json.dumps({"endpoint": "https://push.example.net/a", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}),
        json.dumps({"endpoint": "https://push.example.net/" + "a" * 2000, "keys": {"p256dh": "x", "auth": "y"}}),
    ],
)
def test_a_malformed_subscription_is_refused_with_a_reason(bob_client, body):
    response = bob_client.post(reverse("push-subscribe"), body, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]
    assert not PushSubscription.objects.exists()


def test_unsubscribing_forgets_only_the_users_own_subscription(client, alice, bob):
    mine, theirs = Device(endpoint="https://push.example.net/bob"), Device(endpoint="https://push.example.net/alice")
    client.force_login(alice)
    client.post(reverse("push-subscribe"), subscription_json(theirs), content_type="application/json")
    client.force_login(bob)
    client.post(reverse("push-subscribe"), subscription_json(mine), content_type="application/json")

    response = client.post(
        reverse("push-unsubscribe"), json.dumps({"endpoint": theirs.endpoint}), content_type="application/json"
    )
    assert response.json() == {"unsubscribed": False}
    response = client.post(
        reverse("push-unsubscribe"), json.dumps({"endpoint": mine.endpoint}), content_type="application/json"
    )
    assert response.json() == {"unsubscribed": True}
    assert list(PushSubscription.objects.values_list("user__username", flat=True)) == ["alice"]


def test_the_settings_page_offers_notifications_on_this_device_only_with_keys(bob_client, settings):
    page = bob_client.get(reverse("account-settings")).content.decode()
    assert 'id="push-settings"' in page and f'data-push-key="{settings.WEBPUSH_VAPID.public_key}"' in page
    settings.WEBPUSH_VAPID = None
    page = bob_client.get(reverse("account-settings")).content.decode()
    assert "push-settings" not in page and "data-push-key" not in page
    device = Device(endpoint="https://push.example.net/send/abc")
    response = bob_client.post(reverse("push-subscribe"), subscription_json(device), content_type="application/json")
    assert response.status_code == 404


def test_make_vapid_keys_prints_a_pair_that_belongs_together():
    out = io.StringIO()
    call_command("make_vapid_keys", stdout=out)
    values = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    assert vapid_public_of(values["WEBPUSH_VAPID_PRIVATE_KEY"]) == values["WEBPUSH_VAPID_PUBLIC_KEY"]
    assert values["WEBPUSH_VAPID_SUBJECT"].startswith("mailto:")


def test_keys_from_the_environment_are_checked(monkeypatch, tmp_path):
    public, private = vapid_pair_new()
    other_public, _ = vapid_pair_new()
    monkeypatch.setenv("WEBPUSH_VAPID_PUBLIC_KEY", public)
    monkeypatch.setenv("WEBPUSH_VAPID_PRIVATE_KEY", private)
    monkeypatch.setenv("WEBPUSH_VAPID_SUBJECT", "mailto:ops@example.com")
    keys = vapid_keys_from_env(production=True, var_dir=tmp_path, site_host="chat.example.com")
    assert (keys.public_key, keys.private_key, keys.subject) == (public, private, "mailto:ops@example.com")

    monkeypatch.setenv("WEBPUSH_VAPID_PUBLIC_KEY", other_public)
    with pytest.raises(ImproperlyConfigured, match="is not the public key of"):
        vapid_keys_from_env(production=True, var_dir=tmp_path, site_host="chat.example.com")
    monkeypatch.setenv("WEBPUSH_VAPID_PUBLIC_KEY", public)
    monkeypatch.setenv("WEBPUSH_VAPID_SUBJECT", "ops@example.com")
    with pytest.raises(ImproperlyConfigured, match="WEBPUSH_VAPID_SUBJECT"):
        vapid_keys_from_env(production=True, var_dir=tmp_path, site_host="chat.example.com")
    monkeypatch.delenv("WEBPUSH_VAPID_PUBLIC_KEY")
    with pytest.raises(ImproperlyConfigured, match="or neither"):
        vapid_keys_from_env(production=True, var_dir=tmp_path, site_host="chat.example.com")


def test_production_without_keys_has_push_off_and_development_makes_one_pair(monkeypatch, tmp_path):
    for name in ("WEBPUSH_VAPID_PUBLIC_KEY", "WEBPUSH_VAPID_PRIVATE_KEY", "WEBPUSH_VAPID_SUBJECT"):
        monkeypatch.delenv(name, raising=False)
    assert vapid_keys_from_env(production=True, var_dir=tmp_path, site_host="chat.example.com") is None
    assert not (tmp_path / "vapid.json").exists()
    first = vapid_keys_from_env(production=False, var_dir=tmp_path, site_host="localhost")
    again = vapid_keys_from_env(production=False, var_dir=tmp_path, site_host="localhost")
    assert first == again and vapid_public_of(first.private_key) == first.public_key
    assert first.subject == "mailto:admin@localhost"
    assert (tmp_path / "vapid.json").stat().st_mode & 0o077 == 0  # the private key: the owner's only


def test_the_admin_lists_subscriptions_read_only(client, django_user_model, bob):
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", "a-long-admin-password")
    PushSubscription.objects.create(user=bob, endpoint="https://push.example.net/bob", p256dh="p", auth="a")
    client.force_login(admin)
    listing = client.get("/admin/webpush/pushsubscription/")
    assert listing.status_code == 200 and "https://push.example.net/bob" in listing.content.decode()
    subscription = PushSubscription.objects.get()
    assert client.get(f"/admin/webpush/pushsubscription/{subscription.pk}/change/").status_code == 200
    assert client.get("/admin/webpush/pushsubscription/add/").status_code == 403


def test_production_without_keys_says_at_start_that_push_is_off_and_with_them_signs_with_them():
    # A process of its own: settings are read from the environment once, at start.
    from pubsub_site.tests.deploy.test_settings import production_env, run_manage

    result = run_manage("check", **production_env())
    assert result.returncode == 0, result.stderr
    assert "WEBPUSH_VAPID_PUBLIC_KEY and WEBPUSH_VAPID_PRIVATE_KEY are not set: Web Push is off" in result.stderr

    public, private = vapid_pair_new()
    keys = {"WEBPUSH_VAPID_PUBLIC_KEY": public, "WEBPUSH_VAPID_PRIVATE_KEY": private}
    code = "from django.conf import settings as s; print(s.WEBPUSH_VAPID.public_key, s.WEBPUSH_VAPID.subject)"
    result = run_manage("shell", "-c", code, **production_env(**keys))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == [public, "mailto:admin@chat.example.com"]
    assert "Web Push is off" not in result.stderr
