"""Personas for moderation: alice owns the room, dave moderates it, bob is a plain
member, erin is banned from it, charlie is an outsider; staff runs the admin."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync

from messaging.selectors import room_counters
from messaging.store import buffer
from pubsub_site.redis.client import close_async_clients_for_running_loop
from rooms.models import AuditLog, Membership


@pytest.fixture
def dave(make_user):
    """A moderator of the room."""
    return make_user("dave")


@pytest.fixture
def erin(make_user):
    """Banned from the room."""
    return make_user("erin")


@pytest.fixture
def staff(django_user_model):
    """A site administrator, who moderates from the admin."""
    return django_user_model.objects.create_superuser(username="staff", password="correct-horse-battery")


@pytest.fixture
def room(private_room, dave, erin):
    """A private room: alice owner, dave moderator, bob member, erin banned."""
    Membership.objects.create(room=private_room, user=dave, role=Membership.Role.MODERATOR)
    Membership.objects.create(room=private_room, user=erin, banned=True)
    return private_room


def post_message(room, author, body: str) -> int:
    """Store a message as the consumer does (Redis first); returns its seq."""

    async def append():
        try:
            return await buffer.append(
                room_id=room.pk,
                record={
                    "author": {"id": author.pk, "username": author.username},
                    "body": body,
                    "client_id": str(uuid.uuid4()),
                    "sent_at": "2026-01-01T00:00:00.000Z",
                },
            )
        finally:
            await close_async_clients_for_running_loop()

    room_counters(room_id=room.pk)
    result = async_to_sync(append)()
    assert result.created
    return result.seq


def last_entry() -> AuditLog:
    return AuditLog.objects.order_by("-pk").first()


@pytest.fixture
def sent_events(monkeypatch):
    """What the services send to connected clients (on commit), as (group, event) pairs."""
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("protocol.events.send_to_group", lambda group, event: sent.append((group, event)))
    return sent
