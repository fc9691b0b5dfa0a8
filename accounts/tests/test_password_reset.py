"""Password reset by e-mail, with Django's views and tokens: the same answer whatever the
address, a link that works once and expires, limits per client, per address and per account.

The request only enqueues a job (accounts.jobs.password_reset_mail), the same one for every
address; the job finds out whether the address is a verified account's and sends the mail.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import django_rq
import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from django.urls import reverse

from accounts.tests.conftest import run_queued_jobs, verify_address

pytestmark = pytest.mark.django_db(transaction=True)  # django-rq enqueues on commit

NEW_PASSWORD = "a-brand-new-passphrase-7"


def ask_reset(client, email: str):
    return client.post(reverse("password_reset"), {"email": email})


def reset_link() -> str:
    (message,) = mail.outbox
    return re.search(r"https?://[^/\s]+(/accounts/password/reset/\S+/)", message.body).group(1)


def test_the_log_in_page_links_to_the_reset(client):
    page = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}">Forgot your password?</a>' in page


def test_it_resets_a_password_end_to_end_and_the_link_works_once(client, bob_with_address):
    response = ask_reset(client, "bob@example.com")
    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert run_queued_jobs() == ["accounts.jobs.password_reset_mail"]
    assert mail.outbox[0].to == ["bob@example.com"]
    assert mail.outbox[0].subject == "Reset your password"
    link = reset_link()

    form_page = client.get(link, follow=True)
    assert form_page.context["validlink"] is True
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert done.url == reverse("password_reset_complete")
    bob_with_address.refresh_from_db()
    assert bob_with_address.check_password(NEW_PASSWORD)

    again = client.get(link, follow=True)
    assert again.context["validlink"] is False
    assert "It has expired or was already used." in again.content.decode()


def test_an_expired_link_is_refused(client, bob_with_address, settings, monkeypatch):
    ask_reset(client, "bob@example.com")
    run_queued_jobs()
    link = reset_link()
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(PasswordResetTokenGenerator, "_now", lambda self: later)

    response = client.get(link, follow=True)
    assert response.context["validlink"] is False
    bob_with_address.refresh_from_db()
    assert bob_with_address.check_password("correct-horse-battery")


def test_an_unknown_address_gets_the_same_answer_and_the_same_work(client, bob_with_address):
    """No enumeration: the same redirect, the same page, and the same work in the request
    (one job of the same function with the same arguments' shape); only the job differs."""
    known = ask_reset(client, "bob@example.com")
    known_jobs = [(job.func_name, sorted(job.kwargs)) for job in django_rq.get_queue("default").get_jobs()]
    run_queued_jobs()
    assert len(mail.outbox) == 1

    unknown = ask_reset(client, "nobody@example.com")
    unknown_jobs = [(job.func_name, sorted(job.kwargs)) for job in django_rq.get_queue("default").get_jobs()]
    run_queued_jobs()
    assert len(mail.outbox) == 1  # nothing sent for the unknown address

    assert (unknown.status_code, unknown.url) == (known.status_code, known.url)
    assert unknown_jobs == known_jobs == [("accounts.jobs.password_reset_mail", ["email"])]
    assert client.get(unknown.url).content == client.get(known.url).content


def test_an_unverified_address_gets_no_mail(client, bob):
    bob.email = "bob@example.com"
    bob.save()
    ask_reset(client, "bob@example.com")
    run_queued_jobs()
    assert mail.outbox == []


def test_a_deactivated_account_gets_no_mail(client, bob_with_address):
    bob_with_address.is_active = False
    bob_with_address.save()
    ask_reset(client, "bob@example.com")
    run_queued_jobs()
    assert mail.outbox == []


def test_it_limits_requests_per_address(client, bob_with_address, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "password_reset_email": "2/hour"}
    assert ask_reset(client, "bob@example.com").status_code == 302
    assert ask_reset(client, "BOB@example.com ").status_code == 302
    refused = ask_reset(client, "bob@example.com")
    assert refused.status_code == 429
    assert "Too many password resets asked for this address." in refused.content.decode()
    assert ask_reset(client, "someone-else@example.com").status_code == 302  # another address still may


def test_it_limits_requests_per_client_address(client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "password_reset": "2/hour"}
    assert ask_reset(client, "a@example.com").status_code == 302
    assert ask_reset(client, "b@example.com").status_code == 302
    assert ask_reset(client, "c@example.com").status_code == 429


def test_it_limits_the_mails_per_account_whatever_the_spelling(client, bob_with_address, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "password_reset_account": "1/hour"}
    ask_reset(client, "bob@example.com")
    ask_reset(client, "Bob@Example.com")
    run_queued_jobs()
    assert len(mail.outbox) == 1


def test_a_reset_tells_the_other_account_nothing(client, alice, bob_with_address):
    verify_address(alice, "alice@example.com")
    ask_reset(client, "bob@example.com")
    run_queued_jobs()
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]
    assert "bob" in mail.outbox[0].body and "alice" not in mail.outbox[0].body
