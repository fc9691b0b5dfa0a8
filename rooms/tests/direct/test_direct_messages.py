"""Direct messages: a private room of 2 to 8 people, opened from someone's name.

Personas: alice opens conversations, bob answers, charlie is an outsider who must see
nothing, dave moderates another room (and has no more rights here than charlie)."""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from messaging.models import Message
from messaging.search import message_search
from rooms import moderation
from rooms.models import Membership, Room
from rooms.selectors import directs_of_user, room_ids_readable_by, room_list_for_user
from rooms.services import (
    DIRECT_MAX_MEMBERS,
    RoomNotFound,
    direct_open,
    room_access_for_subscriber,
    room_leave,
)
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def dave(make_user, public_room):
    """A moderator of another room (the Lobby)."""
    user = make_user("dave")
    Membership.objects.create(room=public_room, user=user, role=Membership.Role.MODERATOR)
    return user


@pytest.fixture
def lobby(public_room, bob):
    """alice owns the Lobby, bob is a member: the member list where conversations start."""
    Membership.objects.create(room=public_room, user=bob)
    return public_room


@pytest.fixture
def dm(alice, bob):
    return direct_open(opener=alice, usernames=["bob"])


def open_from_member_list(client, user, username: str):
    client.force_login(user)
    return client.post(reverse("direct-new"), {"usernames": username})


# --- Opening one -------------------------------------------------------------------------


def test_opening_a_dm_from_a_member_list_makes_both_people_plain_members(client, alice, bob, lobby):
    client.force_login(alice)
    page = client.get(lobby.get_absolute_url())
    # bob's name in the member list is a button of the page's direct-message form.
    assert b'form="direct-form" name="usernames" value="bob"' in page.content
    response = open_from_member_list(client, alice, "bob")
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert response.status_code == 302
    assert response.url == room.get_absolute_url()
    assert room.visibility == Room.Visibility.PRIVATE
    assert room.dm_key == f"{alice.pk},{bob.pk}"
    assert set(room.memberships.values_list("user__username", "role")) == {
        ("alice", Membership.Role.MEMBER),
        ("bob", Membership.Role.MEMBER),
    }
    # The address names the people in it (issue 21), with a random suffix that keeps it unique.
    assert re.fullmatch(r"alice-bob-[0-9a-f]{8}", room.slug)


def test_each_side_sees_the_conversation_named_after_the_other(client, alice, bob, dm):
    client.force_login(alice)
    assert client.get(dm.get_absolute_url()).context["title"] == "bob"
    client.force_login(bob)
    page = client.get(dm.get_absolute_url())
    assert page.status_code == 200
    assert page.context["title"] == "alice"


def test_opening_a_dm_with_the_same_person_twice_returns_the_same_conversation(alice, bob, dm):
    assert direct_open(opener=alice, usernames=["BOB"]) == dm
    assert direct_open(opener=bob, usernames=["alice"]) == dm
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


def test_the_database_allows_one_conversation_per_set_of_people(alice, dm):
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(
            kind=Room.Kind.DIRECT,
            dm_key=dm.dm_key,
            visibility=Room.Visibility.PRIVATE,
            name="again",
            slug="again",
            created_by=alice,
        )


def test_the_database_refuses_a_public_direct_conversation(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(
            kind=Room.Kind.DIRECT, dm_key="1,2", visibility=Room.Visibility.PUBLIC, name="x", slug="x", created_by=alice
        )


def test_a_conversation_may_share_its_name_with_a_room(alice, bob, make_user):
    make_user("carol")
    first = direct_open(opener=alice, usernames=["bob"])
    second = direct_open(opener=alice, usernames=["bob", "carol"])
    assert first != second
    assert {first.name, second.name} == {"alice, bob", "alice, bob, carol"}


def test_whoever_left_comes_back_when_the_conversation_is_opened_again(alice, bob, dm):
    room_leave(room=dm, user=bob)
    assert not Membership.objects.filter(room=dm, user=bob).exists()
    assert direct_open(opener=alice, usernames=["bob"]) == dm
    assert Membership.objects.filter(room=dm, user=bob, role=Membership.Role.MEMBER).exists()


@pytest.mark.parametrize(
    ("usernames", "error"),
    [
        ([], "Name at least one other person."),
        (["alice"], "Name at least one other person."),
        (["nobody"], "There is no user named nobody."),
    ],
)
def test_it_explains_a_refused_conversation(alice, usernames, error):
    with pytest.raises(ValidationError) as refused:
        direct_open(opener=alice, usernames=usernames)
    assert refused.value.message_dict["usernames"] == [error]
    assert not Room.objects.exists()


def test_a_dm_with_a_user_banned_from_the_site_is_refused_with_a_clear_error(client, alice, bob):
    bob.is_active = False
    bob.save()
    client.force_login(alice)
    response = client.post(reverse("direct-new"), {"usernames": "bob"})
    assert response.status_code == 400
    assert response.context["form"].errors["usernames"] == [
        "bob is banned from the site: no direct messages with them."
    ]
    assert not Room.objects.filter(kind=Room.Kind.DIRECT).exists()


def test_a_conversation_becomes_read_only_once_someone_in_it_is_banned_from_the_site(client, alice, bob, dm):
    bob.is_active = False
    bob.save()
    assert room_access_for_subscriber(slug=dm.slug, user_id=alice.pk).locked
    client.force_login(alice)
    page = client.get(dm.get_absolute_url())
    assert page.context["direct_banned"] == ["bob"]
    assert b'id="composer"' not in page.content
    assert b"bob is banned from the site: this conversation is read-only." in page.content


def test_a_group_conversation_has_at_most_8_people(alice, make_user):
    others = [make_user(f"user{n}").username for n in range(DIRECT_MAX_MEMBERS)]
    with pytest.raises(ValidationError) as refused:
        direct_open(opener=alice, usernames=others)
    assert "at most 8 people" in refused.value.message_dict["usernames"][0]
    room = direct_open(opener=alice, usernames=others[: DIRECT_MAX_MEMBERS - 1])
    assert room.memberships.count() == DIRECT_MAX_MEMBERS
    # The same people, in any order: the same conversation.
    assert direct_open(opener=alice, usernames=list(reversed(others[: DIRECT_MAX_MEMBERS - 1]))) == room


def test_the_new_message_form_takes_names_separated_by_commas_or_spaces(client, alice, bob, make_user):
    make_user("carol")
    client.force_login(alice)
    assert client.get(reverse("direct-new") + "?to=bob").context["form"].initial["usernames"] == "bob"
    response = client.post(reverse("direct-new"), {"usernames": "@bob, carol"})
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert response.url == room.get_absolute_url()
    assert room.memberships.count() == 3


# --- Nobody else sees it -------------------------------------------------------------------


def test_an_outsider_gets_404_on_the_page_and_every_room_endpoint(client, charlie, dm):
    client.force_login(charlie)
    slug = dm.slug
    assert client.get(dm.get_absolute_url()).status_code == 404
    assert client.get(reverse("room-messages", kwargs={"slug": slug})).status_code == 404
    for name in ("room-join", "room-watch", "room-participate", "room-leave"):
        assert client.post(reverse(name, kwargs={"slug": slug})).status_code == 404
    assert not Membership.objects.filter(room=dm, user=charlie).exists()


def test_an_outsider_is_told_the_conversation_does_not_exist_on_subscribe(charlie, dave, dm):
    for user in (charlie, dave):
        with pytest.raises(RoomNotFound):
            room_access_for_subscriber(slug=dm.slug, user_id=user.pk)


def test_a_moderator_of_another_room_has_no_access(client, dave, dm):
    client.force_login(dave)
    assert client.get(dm.get_absolute_url()).status_code == 404
    assert client.get(reverse("room-moderation", kwargs={"slug": dm.slug})).status_code == 404
    with pytest.raises(PermissionDenied):
        moderation.membership_ban(room=dm, actor=dave, user=dm.created_by)


def test_nobody_in_a_conversation_can_moderate_it(client, alice, bob, dm):
    for actor, target in ((alice, bob), (bob, alice)):
        with pytest.raises(PermissionDenied, match="no moderators"):
            moderation.membership_ban(room=dm, actor=actor, user=target)
        with pytest.raises(PermissionDenied):
            moderation.room_lock(room=dm, actor=actor)
    client.force_login(alice)
    assert client.get(reverse("room-moderation", kwargs={"slug": dm.slug})).status_code == 403
    assert client.post(reverse("room-ban", kwargs={"slug": dm.slug}), {"username": "bob"}).status_code == 403
    assert not Membership.objects.filter(room=dm, banned=True).exists()


def test_site_staff_cannot_ban_or_lock_a_conversation_from_the_admin(django_user_model, alice, bob, dm):
    staff = django_user_model.objects.create_superuser(username="staff", password="correct-horse-battery")
    with pytest.raises(PermissionDenied):
        moderation.membership_ban(room=dm, actor=staff, user=bob, acting_as_staff=True)
    with pytest.raises(PermissionDenied):
        moderation.room_set_slow_mode(room=dm, actor=staff, seconds=30, acting_as_staff=True)


def test_a_conversation_is_never_in_the_room_list(client, alice, bob, charlie, lobby, dm):
    for user in (alice, bob, charlie):
        assert dm not in room_list_for_user(user=user)
        client.force_login(user)
        assert dm not in client.get(reverse("room-list")).context["rooms"]
    # Its people find it in their sidebar; nobody else anywhere on the page.
    assert dm.slug not in client.get(reverse("room-list")).content.decode()


def test_only_its_people_find_its_messages_in_search(alice, bob, charlie, dave, dm):
    Message.objects.create(
        room=dm,
        seq=1,
        author=alice,
        body="the surprise party is on friday",
        client_id=uuid.uuid4(),
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    for user in (alice, bob):
        assert dm.pk in room_ids_readable_by(user=user)
        assert [hit.seq for hit in message_search(user=user, q="surprise party").hits] == [1]
    for user in (charlie, dave):
        assert dm.pk not in room_ids_readable_by(user=user)
        assert message_search(user=user, q="surprise party").hits == []
        assert message_search(user=user, q=f"surprise in:{dm.slug}").hits == []


def test_the_search_page_shows_a_conversation_to_its_people_only(client, alice, bob, charlie, dave, dm):
    Message.objects.create(
        room=dm,
        seq=1,
        author=alice,
        body="the cake is hidden",
        client_id=uuid.uuid4(),
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    client.force_login(bob)
    html = client.get(reverse("search"), {"q": "cake"}).content.decode()
    assert "the <mark>cake</mark> is hidden" in html and f'href="/rooms/{dm.slug}/?around=1"' in html
    # A third user and a moderator of another room: nothing, whatever they type, and no trace of
    # the conversation's address on the page.
    for user in (charlie, dave):
        client.force_login(user)
        for q in ("cake", "from:alice", f"cake in:{dm.slug}", "in:bob", 'in:"alice, bob"'):
            response = client.get(reverse("search"), {"q": q})
            html = response.content.decode()
            assert response.context["page"].hits == [], (user, q)
            assert "Nothing found." in html and "<mark>" not in html
            assert f"/rooms/{dm.slug}/" not in html


def test_someone_who_leaves_a_conversation_stops_finding_its_messages(alice, bob, dm):
    Message.objects.create(
        room=dm,
        seq=1,
        author=alice,
        body="see you at the station",
        client_id=uuid.uuid4(),
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert [hit.seq for hit in message_search(user=bob, q="station").hits] == [1]
    room_leave(room=dm, user=bob)
    assert message_search(user=bob, q="station").hits == []
    assert [hit.seq for hit in message_search(user=alice, q="station").hits] == [1]
    direct_open(opener=alice, usernames=["bob"])  # opened again: bob is back, and so is its history
    assert [hit.seq for hit in message_search(user=bob, q="station").hits] == [1]


# --- The sidebar ---------------------------------------------------------------------------


def test_the_sidebar_lists_conversations_apart_with_their_unread_counts(client, alice, bob, lobby, dm):
    post_message(dm, alice, "hello bob")
    post_message(dm, alice, "are you there?")
    client.force_login(bob)
    page = client.get(lobby.get_absolute_url())
    assert [room.slug for room in page.context["my_rooms"]] == [lobby.slug]
    assert [(room.slug, room.title) for room in page.context["my_directs"]] == [(dm.slug, "alice")]
    assert page.context["unread_by_room"][dm.pk] == 2
    html = page.content.decode()
    directs = html[html.index('id="sidebar-directs"') :]
    assert f'data-room="{dm.slug}"' in directs[: directs.index("</ul>")]
    assert ">alice</a>" in directs
    client.force_login(alice)
    assert client.get(lobby.get_absolute_url()).context["unread_by_room"][dm.pk] == 0


def test_a_group_conversation_is_named_after_the_others(alice, bob, make_user):
    carol = make_user("carol")
    room = direct_open(opener=alice, usernames=["carol", "bob"])
    assert [r.title for r in directs_of_user(user=alice)] == ["bob, carol"]
    assert [r.title for r in directs_of_user(user=carol)] == ["alice, bob"]
    room_leave(room=room, user=bob)
    assert [r.title for r in directs_of_user(user=alice)] == ["carol"]
    assert directs_of_user(user=bob) == []


def test_site_staff_see_its_rows_in_the_admin_but_not_its_page(client, django_user_model, dm):
    staff = django_user_model.objects.create_superuser(username="staff", password="correct-horse-battery")
    client.force_login(staff)
    changelist = client.get(reverse("admin:rooms_room_changelist") + "?kind__exact=direct")
    assert [room.pk for room in changelist.context["cl"].result_list] == [dm.pk]
    assert client.get(reverse("admin:rooms_room_change", args=[dm.pk])).status_code == 200
    assert client.get(dm.get_absolute_url()).status_code == 404


@pytest.mark.postgresql_only(
    reason="SQLite serialises writing transactions (BEGIN IMMEDIATE): both cannot look before either inserts"
)
@pytest.mark.django_db(transaction=True)
def test_two_people_opening_it_at_the_same_moment_get_one_conversation(alice, bob, monkeypatch):
    from django.db import connections

    both_looked = threading.Barrier(2, timeout=10)
    token = secrets.token_urlsafe

    def after_both_looked(n: int) -> str:
        both_looked.wait()  # neither found a conversation: both insert one
        return token(n)

    monkeypatch.setattr("rooms.services.secrets.token_urlsafe", after_both_looked)
    opened: list[Room] = []

    def open_as(opener, other: str) -> None:
        try:
            opened.append(direct_open(opener=opener, usernames=[other]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=open_as, args=args) for args in ((alice, "bob"), (bob, "alice"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(opened) == 2 and opened[0] == opened[1]
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1
    assert opened[0].memberships.count() == 2


def test_anyone_may_leave_a_conversation_and_no_longer_reads_it(client, alice, bob, dm):
    client.force_login(bob)
    response = client.post(reverse("room-leave", kwargs={"slug": dm.slug}), follow=True)
    assert "You left the conversation with alice." in [str(m) for m in response.context["messages"]]
    assert client.get(dm.get_absolute_url()).status_code == 404
    assert client.post(reverse("room-join", kwargs={"slug": dm.slug})).status_code == 404
    assert list(dm.memberships.values_list("user__username", flat=True)) == ["alice"]
