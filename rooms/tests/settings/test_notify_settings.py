"""A member's notification settings for a room (rooms.notify_settings): the room's control and
the page of every room, set by the member only; snoozes end when they say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Profile
from rooms import notify_settings
from rooms.models import Membership
from rooms.services import direct_open

pytestmark = pytest.mark.django_db


def client_of(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def bob_membership(room, bob) -> Membership:
    return Membership.objects.get(room=room, user=bob)


def test_a_member_sets_the_level_of_a_room(bob, private_room):
    response = client_of(bob).post(reverse("room-notify", args=[private_room.slug]), {"level": "nothing"})

    assert response.status_code == 302 and response["Location"] == private_room.get_absolute_url()
    assert bob_membership(private_room, bob).notify_level == "nothing"


def test_the_json_answer_is_the_settings_frame(bob, private_room):
    response = client_of(bob).post(
        reverse("room-notify", args=[private_room.slug]), {"level": "all"}, headers={"Accept": "application/json"}
    )

    assert response.json() == {
        "type": "notify_settings",
        "room": private_room.slug,
        "level": "all",
        "snoozed_until": None,
    }


def test_a_member_snoozes_a_room_for_an_hour_and_unmutes_it(bob, private_room):
    before = timezone.now()
    client_of(bob).post(reverse("room-notify", args=[private_room.slug]), {"snooze": "1h"})

    until = bob_membership(private_room, bob).notifications_snoozed_until
    assert before + timedelta(hours=1) <= until <= timezone.now() + timedelta(hours=1)

    client_of(bob).post(reverse("room-notify", args=[private_room.slug]), {"snooze": "off"})
    assert bob_membership(private_room, bob).notifications_snoozed_until is None


def test_a_bad_level_or_snooze_is_refused_and_changes_nothing(bob, private_room):
    browser = client_of(bob)
    url = reverse("room-notify", args=[private_room.slug])

    for data in ({"level": "loud"}, {"snooze": "forever"}, {}):
        response = browser.post(url, data, headers={"Accept": "application/json"})
        assert response.status_code == 400, data
        assert response.json()["error"]
    row = bob_membership(private_room, bob)
    assert (row.notify_level, row.notifications_snoozed_until) == ("mentions", None)


def test_an_outsider_cannot_set_a_private_rooms_settings(charlie, private_room):
    response = client_of(charlie).post(reverse("room-notify", args=[private_room.slug]), {"level": "all"})

    assert response.status_code == 404
    assert not Membership.objects.filter(user=charlie).exists()


def test_a_reader_who_did_not_join_a_public_room_has_no_settings_to_set(charlie, public_room):
    response = client_of(charlie).post(reverse("room-notify", args=[public_room.slug]), {"level": "all"})

    assert response.status_code == 404
    assert not Membership.objects.filter(user=charlie).exists()


def test_a_banned_member_cannot_set_settings(bob, private_room):
    Membership.objects.filter(room=private_room, user=bob).update(banned=True)

    with pytest.raises(Http404):
        notify_settings.membership_notify_level_set(room=private_room, user=bob, level="all")


def test_the_settings_need_a_post(bob, private_room):
    assert client_of(bob).get(reverse("room-notify", args=[private_room.slug])).status_code == 405


def test_the_next_address_is_followed_only_on_this_site(bob, private_room):
    url = reverse("room-notify", args=[private_room.slug])
    here = reverse("notification-settings")

    assert client_of(bob).post(url, {"level": "all", "next": here})["Location"] == here
    elsewhere = client_of(bob).post(url, {"level": "all", "next": "https://evil.example/"})
    assert elsewhere["Location"] == private_room.get_absolute_url()


def test_until_tomorrow_ends_at_eight_in_the_members_time_zone():
    now = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)  # 23:30 in Paris, 18:30 in New York

    assert notify_settings.snooze_end("tomorrow", now=now, tz_name="Europe/Paris") == datetime(
        2026, 3, 11, 7, 0, tzinfo=UTC
    )
    assert notify_settings.snooze_end("tomorrow", now=now, tz_name="America/New_York") == datetime(
        2026, 3, 11, 12, 0, tzinfo=UTC
    )
    with pytest.raises(ValidationError):
        notify_settings.snooze_end("forever", now=now)


def test_the_view_reads_the_members_time_zone_for_tomorrow(bob, private_room):
    Profile.objects.create(user=bob, time_zone="Asia/Tokyo")

    client_of(bob).post(reverse("room-notify", args=[private_room.slug]), {"snooze": "tomorrow"})

    until = bob_membership(private_room, bob).notifications_snoozed_until
    local = until.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (8, 0)
    assert timezone.now() < until <= timezone.now() + timedelta(days=2)


def test_the_settings_page_lists_every_room_and_conversation_with_its_settings(alice, bob, private_room, public_room):
    Membership.objects.create(room=public_room, user=bob, notify_level="all")
    direct = direct_open(opener=alice, usernames=["bob"])
    Membership.objects.filter(room=direct, user=bob).update(notify_level="nothing")

    page = client_of(bob).get(reverse("notification-settings")).content.decode()

    assert 'data-notify-form="secret-plans" data-level="mentions"' in page
    assert f'data-notify-form="{public_room.slug}" data-level="all"' in page
    assert f'data-notify-form="{direct.slug}" data-level="nothing"' in page


def test_the_settings_page_lists_no_room_one_is_banned_from(bob, private_room):
    Membership.objects.filter(room=private_room, user=bob).update(banned=True)

    page = client_of(bob).get(reverse("notification-settings")).content.decode()

    assert "secret-plans" not in page


def test_the_sidebar_shows_a_quiet_room_without_its_count(alice, bob, private_room, public_room):
    Membership.objects.create(room=public_room, user=bob)
    Membership.objects.filter(room=private_room, user=bob).update(notify_level="nothing")

    page = client_of(bob).get(public_room.get_absolute_url()).content.decode()

    assert 'sidebar__room--quiet" data-room="secret-plans" data-notify="nothing"' in page
    assert f'data-room="{public_room.slug}" data-notify="mentions"' in page


def test_the_room_page_shows_the_control_to_members_only(bob, charlie, public_room, private_room):
    assert 'id="notify-menu"' in client_of(bob).get(private_room.get_absolute_url()).content.decode()
    assert 'id="notify-menu"' not in client_of(charlie).get(public_room.get_absolute_url()).content.decode()


def test_the_room_list_shows_a_quiet_room_without_its_count(bob, private_room, public_room):
    Membership.objects.filter(room=private_room, user=bob).update(
        notifications_snoozed_until=timezone.now() + timedelta(hours=1)
    )

    page = client_of(bob).get(reverse("room-list")).content.decode()

    assert 'room-list__item--quiet" data-room="secret-plans" data-notify="mentions"' in page
    assert f'class="room-list__item" data-room="{public_room.slug}" data-notify="mentions"' in page
