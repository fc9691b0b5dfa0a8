"""Protection of the pages: log-in lock-out (django-axes) and rate limits on sign-ups and room creation."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from limits.errors import StorageError

from rooms.models import Room

pytestmark = pytest.mark.django_db

LIMITS = {"signup": "2/hour", "room_create": "2/hour", "report": "30/hour", "direct_open": "2/hour", "search": "2/hour"}


def log_in(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


# --- Log-in lock-out ------------------------------------------------------------------


def test_wrong_passwords_lock_the_account_out_from_that_address_with_429(client, settings, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, "alice", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password." in response.content.decode()
    locked = log_in(client, "alice", "wrong")
    assert locked.status_code == 429
    assert "Too many failed log-in attempts" in locked.content.decode()
    assert int(locked["Retry-After"]) == 3600
    # Even the right password is refused while locked out.
    again = log_in(client, "alice", "correct-horse-battery")
    assert again.status_code == 429
    assert client.get(reverse("room-create")).status_code == 302


def test_the_lock_out_is_per_username_and_address(client, settings, alice, bob):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "alice", "wrong")
    assert log_in(Client(), "bob", "correct-horse-battery").status_code == 302
    assert log_in(Client(), "alice", "correct-horse-battery", address="10.0.0.7").status_code == 302


def test_a_successful_log_in_resets_the_count(client, settings, alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", "correct-horse-battery").status_code == 302
    client.post(reverse("logout"))
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "alice", "wrong").status_code == 200


def test_thirty_failed_log_ins_over_thirty_names_from_one_address_meet_a_limit(client, settings, make_user):
    """Password spraying: one password tried on every account. The (username, address) lock-out
    never trips (one try per name); the address's own count of failures does, at
    RATE_LIMITS["login_address"] (20 an hour), before the thirtieth name."""
    victim = make_user("victim29")
    statuses = [log_in(client, f"victim{i}" if i != 29 else "victim29", "Spring2026!", "203.0.113.7").status_code
                for i in range(30)]  # fmt: skip
    assert statuses[:20] == [200] * 20
    assert statuses[20:] == [429] * 10
    refused = log_in(client, victim.username, "correct-horse-battery", "203.0.113.7")
    assert refused.status_code == 429  # no password is checked from that address
    assert "Too many failed log-ins from your address." in refused.content.decode()
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert log_in(Client(), victim.username, "correct-horse-battery", "198.51.100.1").status_code == 302


def test_failed_log_ins_for_one_account_from_many_addresses_lock_that_account_only(settings, alice, bob):
    """A botnet tries passwords on alice from a new address each time: the account's count of
    failures over every address (RATE_LIMITS["login_account"], 15 an hour) stops it."""
    statuses = [log_in(Client(), "alice", f"guess-{i}", f"198.51.100.{i + 1}").status_code for i in range(16)]
    assert statuses == [200] * 15 + [429]
    refused = log_in(Client(), "alice", "correct-horse-battery", "192.0.2.99")
    assert refused.status_code == 429
    assert "Too many failed log-ins for this account." in refused.content.decode()
    assert log_in(Client(), "bob", "correct-horse-battery", "192.0.2.99").status_code == 302


def test_the_spraying_limits_count_usernames_whatever_their_case(settings, alice):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "login_account": "3/hour"}
    for i, name in enumerate(["alice", "ALICE", "Alice"]):
        assert log_in(Client(), name, "wrong", f"198.51.100.{i + 1}").status_code == 200
    assert log_in(Client(), "aLiCe", "wrong", "198.51.100.9").status_code == 429


def test_sign_up_still_logs_the_new_user_in(client):
    response = client.post(
        reverse("signup"), {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"}
    )
    assert response.status_code == 302
    assert client.get(response.url).context["user"].username == "dora"


# --- Rate limits --------------------------------------------------------------------


def sign_up(username: str, address: str = "127.0.0.1"):
    password = "a-long-passphrase-1"
    return Client().post(
        reverse("signup"),
        {"username": username, "password1": password, "password2": password},
        REMOTE_ADDR=address,
    )


def test_sign_ups_past_the_limit_answer_429_with_retry_after(settings):
    settings.RATE_LIMITS = LIMITS
    assert sign_up("dora").status_code == 302
    assert sign_up("eddie").status_code == 302
    refused = sign_up("fiona")
    assert refused.status_code == 429
    assert 3500 < int(refused["Retry-After"]) <= 3600
    assert "Too many sign-ups from your address. Try again in 60 minutes." in refused.content.decode()
    assert not get_user_model().objects.filter(username="fiona").exists()
    assert sign_up("fiona", address="10.0.0.9").status_code == 302


def test_failed_sign_ups_count_too(settings):
    """Otherwise the form's "already exists" answer would be a free oracle for usernames."""
    settings.RATE_LIMITS = LIMITS
    assert sign_up("").status_code == 400
    assert sign_up("").status_code == 400
    assert sign_up("dora").status_code == 429


def test_the_sign_up_page_itself_is_not_limited(client, settings):
    settings.RATE_LIMITS = {**LIMITS, "signup": "1/hour"}
    for _ in range(3):
        assert client.get(reverse("signup")).status_code == 200


def create_room(client: Client, name: str):
    return client.post(reverse("room-create"), {"name": name, "visibility": "public"})


def test_room_creation_past_the_limit_answers_429_with_retry_after(client, settings, alice, bob):
    settings.RATE_LIMITS = LIMITS
    client.force_login(alice)
    assert create_room(client, "One").status_code == 302
    assert create_room(client, "Two").status_code == 302
    refused = create_room(client, "Three")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 3500
    assert "You have created too many rooms." in refused.content.decode()
    assert not Room.objects.filter(name="Three").exists()
    other = Client()
    other.force_login(bob)
    assert create_room(other, "Three").status_code == 302


def test_opening_conversations_past_the_limit_answers_429(client, settings, alice, make_user):
    settings.RATE_LIMITS = LIMITS
    client.force_login(alice)
    for name in ("dm1", "dm2", "dm3"):
        make_user(name)
    assert client.post(reverse("direct-new"), {"usernames": "dm1"}).status_code == 302
    assert client.post(reverse("direct-new"), {"usernames": "dm2"}).status_code == 302
    refused = client.post(reverse("direct-new"), {"usernames": "dm3"})
    assert refused.status_code == 429
    assert "You have opened too many conversations." in refused.content.decode()
    assert not Room.objects.filter(kind=Room.Kind.DIRECT, memberships__user__username="dm3").exists()


def test_a_failing_redis_lets_requests_through(client, settings, alice, monkeypatch):
    class Broken:
        def hit(self, *args, **kwargs):
            raise StorageError(ConnectionError("down"))

    settings.RATE_LIMITS = {**LIMITS, "room_create": "1/hour"}
    monkeypatch.setattr("pubsub_site.ratelimit._limiter", lambda: Broken())
    client.force_login(alice)
    assert create_room(client, "One").status_code == 302
    assert create_room(client, "Two").status_code == 302


def test_bad_rate_settings_stop_the_process():
    from pubsub_site.tests.deploy.test_settings import run_manage

    result = run_manage("check", RATE_LIMIT_SIGNUP="lots")
    assert result.returncode != 0
    assert "RATE_LIMIT_SIGNUP='lots' is not a rate" in result.stderr
