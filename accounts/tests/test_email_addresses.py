"""E-mail addresses: optional at sign-up (or required by SIGNUP_EMAIL_REQUIRED), used only
once their signed link is followed; a change is confirmed by the new address, and the old
one is told."""

from __future__ import annotations

import re
import smtplib

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from accounts.models import Profile
from accounts.services import email_verification_token
from accounts.tests.conftest import verify_address

pytestmark = pytest.mark.django_db

SIGN_UP = {"username": "dora", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"}


def link_in(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/email/verify/\S+/)", message.body).group(1)


def test_it_signs_up_without_an_address_by_default(client, mailoutbox):
    assert client.post(reverse("signup"), SIGN_UP).status_code == 302
    assert get_user_model().objects.get(username="dora").email == ""
    assert mailoutbox == []


def test_it_requires_an_address_when_the_setting_says_so(client, settings):
    settings.SIGNUP_EMAIL_REQUIRED = True
    response = client.post(reverse("signup"), SIGN_UP)
    assert response.status_code == 400
    assert response.context["form"].errors["email"] == ["This field is required."]


def test_a_sign_up_address_is_used_once_its_link_is_followed(client, mailoutbox):
    client.post(reverse("signup"), {**SIGN_UP, "email": "dora@example.com"})
    dora = get_user_model().objects.get(username="dora")
    assert dora.email == ""  # not before the link
    (message,) = mailoutbox
    assert message.to == ["dora@example.com"]

    response = client.get(link_in(message))
    assert response.status_code == 200
    assert "dora@example.com is now the confirmed address" in response.content.decode()
    dora.refresh_from_db()
    assert dora.email == "dora@example.com"
    assert Profile.objects.get(user=dora).email_verified


def test_a_change_is_confirmed_by_the_new_address_and_the_old_one_is_told(client, bob, mailoutbox):
    verify_address(bob, "bob@example.com")
    client.force_login(bob)
    client.post(reverse("account-settings"), {"email": "bob@new.example", "mention_emails": "on"})
    verify, notice = mailoutbox
    assert verify.to == ["bob@new.example"] and notice.to == ["bob@example.com"]
    assert "bob@new.example" in notice.body
    bob.refresh_from_db()
    assert bob.email == "bob@example.com"  # the old address stays, verified, until the link

    client.get(link_in(verify))
    bob.refresh_from_db()
    assert bob.email == "bob@new.example"
    assert Profile.objects.get(user=bob).email_verified


def test_a_link_made_before_a_later_change_is_refused(client, bob):
    verify_address(bob, "bob@example.com")
    stale = email_verification_token(user=bob, email="first@example.com")
    verify_address(bob, "second@example.com")
    response = client.get(reverse("email-verify", args=[stale]))
    assert response.status_code == 400
    assert "no longer valid" in response.content.decode()
    bob.refresh_from_db()
    assert bob.email == "second@example.com"


def test_a_forged_or_expired_link_is_refused(client, bob, settings):
    forged = signing.dumps({"u": bob.pk, "e": "evil@example.com", "o": ""}, salt="another-salt")
    assert client.get(reverse("email-verify", args=[forged])).status_code == 400
    settings.EMAIL_VERIFY_TIMEOUT = -1
    token = email_verification_token(user=bob, email="bob@example.com")
    response = client.get(reverse("email-verify", args=[token]))
    assert response.status_code == 400 and "expired" in response.content.decode()
    bob.refresh_from_db()
    assert bob.email == ""


def test_the_links_asked_for_are_limited(client, bob, settings, mailoutbox):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "email_verify": "1/hour"}
    client.force_login(bob)
    client.post(reverse("account-settings"), {"email": "bob@example.com"})
    client.post(reverse("account-settings"), {"email": "bob@other.example"})
    assert [m.to for m in mailoutbox] == [["bob@example.com"]]


class FailingBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("the SMTP server went away")


def test_a_sign_up_stands_when_the_link_cannot_be_sent(client, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FailingBackend"
    response = client.post(reverse("signup"), {**SIGN_UP, "email": "dora@example.com"}, follow=True)
    assert response.status_code == 200
    assert "We could not send the confirmation link: ask for it again in Settings." in response.content.decode()
    assert response.context["user"].username == "dora"
