"""E-mail for missed mentions: one digest to people who are away, at most once an hour."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import django_rq
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core import mail
from django.db import connections
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from accounts.models import Profile
from messaging.models import Message, Notification
from messaging.notifications.digests import mention_digests_schedule, mention_digests_send
from messaging.store import changes
from messaging.store import online as store_online
from messaging.tests.wsclient import connected, eventually
from pubsub_site.redis.client import get_redis
from rooms.models import Membership

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)
LATER = T0 + timedelta(minutes=11)  # the first sweep that finds a mention made at T0 due


@pytest.fixture
def bob(make_user):
    user = make_user("bob")
    user.email = "bob@example.com"
    user.save()
    Profile.objects.create(user=user, email_verified=True)  # digests go to verified addresses only
    return user


def mention(room, author, user, body="@bob look", *, at=T0) -> Notification:
    seq = (Message.objects.filter(room=room).order_by("-seq").values_list("seq", flat=True).first() or 0) + 1
    Message.objects.create(room=room, seq=seq, author=author, body=body, client_id=uuid.uuid4(), sent_at=at)
    return Notification.objects.create(
        user=user, room=room, seq=seq, from_user=author, excerpt=body[:200], created_at=at
    )


def test_it_emails_a_mention_unread_for_ten_minutes_to_a_user_with_no_socket(alice, bob, private_room, settings):
    settings.SITE_URL = "https://chat.example.com"
    mention(private_room, alice, bob, "@bob can you review the plan?")

    assert mention_digests_send(now=T0 + timedelta(minutes=9)) == 0  # not yet
    assert mention_digests_send(now=LATER) == 1

    (email,) = mail.outbox
    assert email.to == ["bob@example.com"]
    assert email.subject == "alice mentioned you in Secret Plans"
    assert "alice in Secret Plans:" in email.body
    assert "@bob can you review the plan?" in email.body
    assert "https://chat.example.com/rooms/secret-plans/#seq-1" in email.body
    assert "https://chat.example.com/accounts/settings/" in email.body  # how to stop them
    html, mimetype = email.alternatives[0]
    assert mimetype == "text/html"
    assert 'href="https://chat.example.com/rooms/secret-plans/#seq-1"' in html
    assert 'href="https://chat.example.com/accounts/settings/"' in html
    assert email.extra_headers["List-Unsubscribe"] == "<https://chat.example.com/accounts/settings/>"
    profile = Profile.objects.get(user=bob)
    assert profile.last_mention_email_at == LATER
    assert profile.mention_emailed_upto == Notification.objects.get().pk
    # Never twice for the same mention, even long after the hour.
    assert mention_digests_send(now=LATER + timedelta(hours=3)) == 0
    assert len(mail.outbox) == 1


def test_it_sends_nothing_for_a_mention_read_in_the_room_in_time(alice, bob, private_room):
    mention(private_room, alice, bob)
    async_to_sync(changes.mark_read)(room_id=private_room.pk, user_id=bob.pk, seq=1)  # read live (Redis)

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []
    # Passed over for good: reading does not make it due again.
    assert Profile.objects.get(user=bob).mention_emailed_upto == Notification.objects.get().pk


def test_it_sends_nothing_for_a_mention_read_by_the_persisted_marker(alice, bob, private_room):
    mention(private_room, alice, bob)
    Membership.objects.filter(room=private_room, user=bob).update(last_read_seq=1)

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_sends_nothing_for_a_mention_seen_on_the_notifications_page(alice, bob, private_room):
    mention(private_room, alice, bob)
    Notification.objects.update(read_at=T0 + timedelta(minutes=5))

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("async_cleanup")
async def test_it_waits_while_the_user_has_a_socket_open_and_sends_once_they_leave(alice, bob, private_room):
    send = database_sync_to_async(mention_digests_send)
    await database_sync_to_async(mention)(private_room, alice, bob)
    bob_ws = await connected(bob)
    await eventually(lambda: store_online.users_online(user_ids=[bob.pk]) == {bob.pk})

    assert await send(now=LATER) == 0
    assert mail.outbox == []

    await bob_ws.close()
    await eventually(lambda: store_online.users_online(user_ids=[bob.pk]) == set())
    assert await send(now=LATER + timedelta(minutes=1)) == 1
    assert len(mail.outbox) == 1


def test_it_sends_nothing_to_a_user_who_turned_the_emails_off(alice, bob, private_room):
    Profile.objects.filter(user=bob).update(mention_emails=False)
    mention(private_room, alice, bob)

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_sends_nothing_to_a_user_without_an_address(alice, bob, private_room):
    bob.email = ""
    bob.save()
    mention(private_room, alice, bob)

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_sends_nothing_to_a_user_who_can_no_longer_read_the_room(alice, bob, private_room):
    mention(private_room, alice, bob)
    Membership.objects.filter(room=private_room, user=bob).update(banned=True)

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_sends_nothing_for_a_deleted_message(alice, bob, private_room):
    mention(private_room, alice, bob)
    Message.objects.update(deleted_at=T0 + timedelta(minutes=1))

    assert mention_digests_send(now=LATER) == 0
    assert mail.outbox == []


def test_it_sends_at_most_one_email_an_hour_and_the_next_carries_what_waited(alice, bob, private_room):
    mention(private_room, alice, bob, "@bob first")
    assert mention_digests_send(now=LATER) == 1

    mention(private_room, alice, bob, "@bob second", at=T0 + timedelta(minutes=20))
    mention(private_room, alice, bob, "@bob third", at=T0 + timedelta(minutes=25))
    assert mention_digests_send(now=T0 + timedelta(minutes=40)) == 0  # within the hour: waits
    assert len(mail.outbox) == 1

    assert mention_digests_send(now=LATER + timedelta(hours=1)) == 1
    first, second = mail.outbox
    assert "@bob first" in first.body and "@bob second" not in first.body
    assert second.subject == "2 mentions while you were away"
    assert "@bob second" in second.body and "@bob third" in second.body and "@bob first" not in second.body


def test_one_digest_lists_every_mention_due_at_once(alice, bob, private_room, public_room):
    mention(private_room, alice, bob, "@bob one")
    mention(public_room, alice, bob, "@bob two", at=T0 + timedelta(seconds=30))

    assert mention_digests_send(now=LATER) == 1
    (email,) = mail.outbox
    assert "alice in Secret Plans:" in email.body and "alice in Lobby:" in email.body


def test_the_html_digest_escapes_what_people_wrote(alice, bob, private_room):
    mention(private_room, alice, bob, '@bob <script>alert("x")</script> & <b>bold</b>')

    assert mention_digests_send(now=LATER) == 1
    (email,) = mail.outbox
    html, _ = email.alternatives[0]
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    # The text part is text: what was written, as written.
    assert '<script>alert("x")</script> & <b>bold</b>' in email.body


def test_a_digest_that_fails_to_send_is_tried_again_by_the_next_sweep(alice, bob, private_room, monkeypatch):
    mention(private_room, alice, bob)

    def refuse(self, fail_silently=False):
        raise OSError("SMTP server unreachable")

    with monkeypatch.context() as patched:
        patched.setattr("django.core.mail.EmailMultiAlternatives.send", refuse)
        assert mention_digests_send(now=LATER) == 0
    profile = Profile.objects.get(user=bob)
    assert (profile.last_mention_email_at, profile.mention_emailed_upto) == (None, 0)

    assert mention_digests_send(now=LATER + timedelta(minutes=1)) == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_send_one_email(alice, bob, private_room):
    mention(private_room, alice, bob)
    start = threading.Barrier(4)
    results: list[int] = []

    def sweep():
        try:
            start.wait()
            results.append(mention_digests_send(now=LATER))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == [0, 0, 0, 1]
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)  # django-rq queues on commit
def test_one_worker_of_all_queues_the_job_each_period(settings):
    settings.MENTION_EMAIL_SWEEP_SECONDS = 60
    client = get_redis(None)
    queue = django_rq.get_queue("default")
    assert mention_digests_schedule(client=client) is True
    assert mention_digests_schedule(client=client) is False  # another worker, the same minute
    assert [job.func_name for job in queue.jobs] == ["messaging.jobs.send_mention_digests"]
    assert 55 <= client.ttl("pubsub:mention_emails:scheduled") <= 60


def test_the_settings_page_turns_them_off_and_mentions_made_meanwhile_stay_unsent(client, alice, bob, private_room):
    client.force_login(bob)
    assert client.post(reverse("account-settings"), {"email": "bob@example.com"}).status_code == 302  # box unticked
    mention(private_room, alice, bob, "@bob while off")
    assert mention_digests_send(now=LATER) == 0
    assert mention_digests_send(now=LATER + timedelta(hours=2)) == 0
    assert mail.outbox == []

    # Back on: what was said while they were off is not dug up; what comes next is sent.
    client.post(reverse("account-settings"), {"email": "bob@example.com", "mention_emails": "on"})
    assert mention_digests_send(now=LATER + timedelta(hours=3)) == 0
    mention(private_room, alice, bob, "@bob after", at=T0 + timedelta(hours=3))
    assert mention_digests_send(now=LATER + timedelta(hours=3)) == 1
    (email,) = mail.outbox
    assert "@bob after" in email.body and "@bob while off" not in email.body


@pytest.mark.django_db(transaction=True)  # the job ends its database connection, as in a worker
def test_the_queued_job_run_by_a_worker_sends_the_digest(settings, alice, bob, private_room):
    settings.SITE_URL = "https://chat.example.com"
    mention(private_room, alice, bob, "@bob the job found me", at=timezone.now() - timedelta(minutes=11))
    queue = django_rq.get_queue("default")
    assert mention_digests_schedule(client=get_redis(None)) is True
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    (email,) = mail.outbox
    assert email.to == ["bob@example.com"] and "@bob the job found me" in email.body
    assert queue.finished_job_registry.count == 1 and queue.failed_job_registry.count == 0


def test_it_sends_nothing_to_an_address_not_yet_verified(alice, bob, private_room):
    Profile.objects.filter(user=bob).update(email_verified=False)
    mention(private_room, alice, bob)
    mention_digests_send(now=LATER)
    assert mail.outbox == []
