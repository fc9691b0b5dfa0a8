"""The settings page: the e-mail address, and the mention e-mails on or off (default on)."""

import pytest
from django.urls import reverse

from accounts.models import Profile

pytestmark = pytest.mark.django_db


def test_it_asks_an_anonymous_visitor_to_log_in(client):
    response = client.get(reverse("account-settings"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_mention_emails_are_on_by_default(client, bob):
    client.force_login(bob)
    response = client.get(reverse("account-settings"))
    assert response.status_code == 200
    assert response.context["form"].initial == {"email": "", "mention_emails": True}
    assert 'id="id_mention_emails" checked' in response.content.decode()


def test_it_turns_the_mention_emails_off_and_sends_the_new_address_its_link(client, bob, mailoutbox):
    client.force_login(bob)
    response = client.post(reverse("account-settings"), {"email": "bob@example.com"})  # box unticked
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.email == ""  # until the link is followed
    (verify,) = mailoutbox
    assert verify.to == ["bob@example.com"]
    assert Profile.objects.get(user=bob).mention_emails is False
    assert "Settings saved." in client.get(reverse("account-settings")).content.decode()

    client.post(reverse("account-settings"), {"email": "bob@example.com", "mention_emails": "on"})
    assert Profile.objects.get(user=bob).mention_emails is True


def test_it_refuses_a_bad_address(client, bob):
    client.force_login(bob)
    response = client.post(reverse("account-settings"), {"email": "not an address", "mention_emails": "on"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    bob.refresh_from_db()
    assert bob.email == ""


def test_each_user_changes_only_their_own_settings(client, alice, bob):
    client.force_login(bob)
    client.post(reverse("account-settings"), {"email": "bob@example.com"})
    assert not Profile.objects.filter(user=alice).exists()
    alice.refresh_from_db()
    assert alice.email == ""


def test_the_admin_lists_profiles(admin_client, bob):
    Profile.objects.create(user=bob, mention_emails=False)
    response = admin_client.get(reverse("admin:accounts_profile_changelist"))
    assert response.status_code == 200
    assert "bob" in response.content.decode()


def test_the_admin_offers_no_profile_without_a_user(client, django_user_model):
    """Found by tests/hostile/test_http_fuzz.py: the add form's user is read-only, so a post
    made a profile of nobody (a 500). Profiles come with their users."""
    staff = django_user_model.objects.create_superuser("root", "root@example.com", "correct-horse-battery")
    client.force_login(staff)
    assert client.get("/admin/accounts/profile/add/").status_code == 403
    assert client.post("/admin/accounts/profile/add/", {"mention_emails": "on"}).status_code == 403
