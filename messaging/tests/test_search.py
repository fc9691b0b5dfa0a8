"""Search (messaging/search/): the query language, who finds what, and the results page.

Personas: alice owns the rooms, bob is a member of the private one, charlie is an outsider."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from messaging.models import Message
from messaging.search import ParsedQuery, message_search, search_query_parse
from messaging.selectors import room_counters
from messaging.store import changes
from messaging.store.persistence import room_persist
from pubsub_site.redis.client import close_async_clients_for_running_loop
from rooms import moderation
from rooms.models import Membership, Room
from rooms.services import room_create, room_leave
from rooms.tests.conftest import post_message

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def stored(room: Room, author, body: str, *, minutes: int = 0, **fields) -> Message:
    """A message as the persistence job leaves it in PostgreSQL."""
    seq = (Message.objects.filter(room=room).order_by("-seq").values_list("seq", flat=True).first() or 0) + 1
    return Message.objects.create(
        room=room,
        seq=seq,
        author=author,
        body=body,
        client_id=uuid.uuid4(),
        sent_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def found(user, q: str) -> list[str]:
    return [hit.excerpt.replace("<mark>", "").replace("</mark>", "") for hit in message_search(user=user, q=q).hits]


# --- The index ----------------------------------------------------------------------------


@pytest.mark.postgresql_only(reason="the tsvector column and its GIN index are PostgreSQL's; SQLite has FTS5")
def test_the_body_has_a_stored_generated_tsvector_with_a_gin_index():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data_type, is_generated, generation_expression FROM information_schema.columns"
            " WHERE table_name = 'messaging_message' AND column_name = 'search_vector'"
        )
        [(data_type, generated, expression)] = cursor.fetchall()
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_search_vector'")
        [(index,)] = cursor.fetchall()
    assert (data_type, generated) == ("tsvector", "ALWAYS")
    assert expression == "to_tsvector('english'::regconfig, body)"
    assert "USING gin (search_vector)" in index


# --- The query language ------------------------------------------------------------------


def test_it_takes_in_and_from_filters_out_of_the_query():
    parsed = search_query_parse('deploy in:ops "rolled back" from:bob')
    assert parsed == ParsedQuery(text='deploy "rolled back"', rooms=("ops",), authors=("bob",))


def test_it_reads_quoted_room_names_and_leading_hash_or_at():
    parsed = search_query_parse('IN:"Secret Plans" in:#lobby FROM:@Alice from:"carol" hello')
    assert parsed == ParsedQuery(text="hello", rooms=("Secret Plans", "lobby"), authors=("Alice", "carol"))


def test_it_keeps_quotes_and_operators_for_the_full_text_search():
    assert search_query_parse('  "exact   phrase"  -spam   cats or dogs ').text == '"exact phrase" -spam cats or dogs'


def test_a_filter_word_inside_a_word_is_not_a_filter():
    assert search_query_parse("login:failed within:reach").text == "login:failed within:reach"


@pytest.mark.parametrize("q", ["", "   ", "in:", 'from:""'])
def test_an_empty_query_searches_nothing(q, alice, public_room):
    stored(public_room, alice, "hello")
    parsed = search_query_parse(q)
    assert parsed.is_empty
    assert message_search(user=alice, q=q).hits == []


def test_a_filter_alone_lists_the_matching_messages(alice, bob, public_room):
    stored(public_room, alice, "from alice", minutes=1)
    stored(public_room, bob, "from bob", minutes=2)
    assert found(alice, "from:bob") == ["from bob"]
    assert found(alice, "in:lobby") == ["from bob", "from alice"]


# --- Who finds what ------------------------------------------------------------------------


def test_an_outsider_finds_nothing_from_a_private_room_and_a_member_does(alice, bob, charlie, private_room):
    stored(private_room, alice, "the launch code is banana")
    assert found(charlie, "banana") == []
    assert found(charlie, "in:secret-plans banana") == []
    assert message_search(user=charlie, q="in:secret-plans banana").unknown_rooms == ("secret-plans",)
    assert found(bob, "banana") == ["the launch code is banana"]
    assert found(alice, "banana") == ["the launch code is banana"]


def test_any_signed_in_user_searches_the_history_of_public_rooms(alice, charlie, public_room):
    stored(public_room, alice, "welcome to the lobby, everyone")
    assert not Membership.objects.filter(room=public_room, user=charlie).exists()
    assert found(charlie, "welcome") == ["welcome to the lobby, everyone"]


def test_a_removed_member_stops_finding_a_private_rooms_messages(alice, bob, private_room):
    stored(private_room, alice, "quarterly numbers attached")
    assert found(bob, "quarterly") == ["quarterly numbers attached"]
    Membership.objects.filter(room=private_room, user=bob).delete()
    assert found(bob, "quarterly") == []


@pytest.mark.parametrize("how", ["removed by a moderator", "left"])
def test_a_member_who_is_removed_or_leaves_stops_finding_a_private_rooms_messages(
    client, alice, bob, private_room, how
):
    stored(private_room, alice, "the offsite is in lisbon")
    client.force_login(bob)
    assert "<mark>lisbon</mark>" in client.get(reverse("search"), {"q": "lisbon"}).content.decode()
    if how == "left":
        room_leave(room=private_room, user=bob)
    else:
        moderation.membership_remove(room=private_room, actor=alice, user=bob)
    assert found(bob, "lisbon") == []
    assert found(bob, "in:secret-plans") == []
    html = client.get(reverse("search"), {"q": "lisbon in:secret-plans"}).content.decode()
    assert "<mark>lisbon</mark>" not in html and "Nothing found." in html
    assert "No room you can read is called <q>secret-plans</q>" in html
    # Invited back, they find the room's history again, old messages included.
    Membership.objects.create(room=private_room, user=bob)
    assert found(bob, "lisbon") == ["the offsite is in lisbon"]


def test_a_banned_member_stops_finding_the_rooms_messages_even_in_a_public_room(alice, bob, public_room, private_room):
    stored(public_room, alice, "public pineapple")
    stored(private_room, alice, "private pineapple")
    Membership.objects.create(room=public_room, user=bob)
    assert found(bob, "pineapple") == ["private pineapple", "public pineapple"]
    Membership.objects.filter(user=bob).update(banned=True)
    assert found(bob, "pineapple") == []


def test_a_private_room_without_membership_stays_hidden_whatever_the_filters(alice, charlie, private_room):
    stored(private_room, alice, "secret")
    assert found(charlie, "from:alice") == []
    assert found(charlie, 'in:"Secret Plans"') == []


def test_deleted_and_hidden_messages_are_never_found(alice, bob, public_room):
    stored(public_room, alice, "kept apple", minutes=1)
    stored(public_room, alice, "deleted apple", minutes=2, deleted_at=timezone.now())
    stored(public_room, alice, "hidden apple", minutes=3, hidden_by=alice)
    assert found(bob, "apple") == ["kept apple"]


@pytest.mark.parametrize("hidden", [False, True], ids=["deleted by its author", "hidden by a moderator"])
def test_a_deletion_still_only_in_redis_hides_the_message_at_once(alice, bob, public_room, hidden):
    message = stored(public_room, alice, "regrettable sentence")
    stored(public_room, alice, "another regrettable one", minutes=1)
    room_counters(room_id=public_room.pk)
    changes.delete(room_id=public_room.pk, seq=message.seq, at="2026-01-01T12:01:00.000Z", by=alice.pk, hidden=hidden)
    assert found(bob, "regrettable") == ["another regrettable one"]
    assert found(alice, "from:alice") == ["another regrettable one"]


def test_an_edit_still_only_in_redis_is_what_the_results_show_and_match(alice, bob, public_room):
    first = stored(public_room, alice, "lunch at noon, bring apples", minutes=1)
    second = stored(public_room, alice, "apples are on the table", minutes=2)
    room_counters(room_id=public_room.pk)
    edit(public_room, first.seq, "lunch at one, bring pears")
    edit(public_room, second.seq, "apples and pears are on the table")
    assert found(bob, "apples") == ["apples and pears are on the table"]
    assert found(bob, "lunch") == ["lunch at one, bring pears"]
    assert found(bob, "apples -pears") == []
    assert found(bob, "from:alice") == ["apples and pears are on the table", "lunch at one, bring pears"]
    assert all(hit.edited for hit in message_search(user=bob, q="lunch").hits)


# --- What is found, in what order -----------------------------------------------------------


def test_results_are_newest_first(alice, public_room, private_room):
    stored(public_room, alice, "cake one", minutes=1)
    stored(private_room, alice, "cake two", minutes=3)
    stored(public_room, alice, "cake three", minutes=2)
    assert found(alice, "cake") == ["cake two", "cake three", "cake one"]


def test_words_match_their_other_forms_and_every_word_must_match(alice, public_room):
    stored(public_room, alice, "We are deploying the new build", minutes=1)
    stored(public_room, alice, "deployed yesterday", minutes=2)
    stored(public_room, alice, "a build without the word", minutes=3)
    assert found(alice, "deploy") == ["deployed yesterday", "We are deploying the new build"]
    assert found(alice, "deploy build") == ["We are deploying the new build"]
    assert found(alice, "deploy -build") == ["deployed yesterday"]


def test_a_quoted_phrase_matches_its_words_in_order(alice, public_room):
    stored(public_room, alice, "we rolled back the release", minutes=1)
    stored(public_room, alice, "back then we rolled dice", minutes=2)
    assert found(alice, '"rolled back"') == ["we rolled back the release"]


def test_in_and_from_narrow_the_results(alice, bob, public_room, private_room):
    stored(public_room, alice, "tea by alice in the lobby", minutes=1)
    stored(public_room, bob, "tea by bob in the lobby", minutes=2)
    stored(private_room, bob, "tea by bob in secret", minutes=3)
    assert found(bob, "tea in:lobby") == ["tea by bob in the lobby", "tea by alice in the lobby"]
    assert found(bob, 'tea in:"secret plans"') == ["tea by bob in secret"]
    assert found(bob, "tea from:BOB") == ["tea by bob in secret", "tea by bob in the lobby"]
    assert found(bob, "tea from:bob in:lobby") == ["tea by bob in the lobby"]
    assert found(bob, "tea in:lobby in:secret-plans from:alice from:bob") == [
        "tea by bob in secret",
        "tea by bob in the lobby",
        "tea by alice in the lobby",
    ]
    page = message_search(user=bob, q="tea from:nobody")
    assert page.hits == [] and page.unknown_authors == ("nobody",)


def test_highlighting_marks_the_matches_and_escapes_the_rest(alice, public_room):
    stored(public_room, alice, '<script>alert("x")</script> & <b>deploying</b> now')
    [hit] = message_search(user=alice, q="deploy").hits
    assert hit.excerpt == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;<mark>deploying</mark>&lt;/b&gt; now"
    )


def test_markers_in_a_message_never_become_markup(alice, public_room):
    stored(public_room, alice, "odd \x02bytes\x03 around <i>word</i>")
    [hit] = message_search(user=alice, q="word").hits
    assert "<i>" not in hit.excerpt and "<mark>" in hit.excerpt
    assert hit.excerpt.count("<mark>") == hit.excerpt.count("</mark>") == 1


def test_a_long_message_shows_an_excerpt_around_the_match(alice, public_room):
    words = [f"filler{i}" for i in range(200)]
    words[120] = "needle"
    stored(public_room, alice, " ".join(words))
    [hit] = message_search(user=alice, q="needle").hits
    assert "<mark>needle</mark>" in hit.excerpt
    assert hit.excerpt.startswith("… ") and hit.excerpt.endswith(" …")
    assert len(hit.excerpt) < 600


def test_results_come_fifty_a_page_with_a_cursor_for_the_next(alice, public_room):
    for i in range(55):
        stored(public_room, alice, f"ping number {i}", minutes=i)
    first = message_search(user=alice, q="ping")
    assert len(first.hits) == 50 and first.hits[0].seq == 55
    assert first.next_cursor
    second = message_search(user=alice, q="ping", before=first.next_cursor)
    assert [hit.seq for hit in second.hits] == [5, 4, 3, 2, 1]
    assert second.next_cursor is None


def test_messages_sent_at_the_same_instant_page_by_id(alice, public_room):
    for _ in range(3):
        stored(public_room, alice, "twin time")
    first = message_search(user=alice, q="twin", limit=2)
    second = message_search(user=alice, q="twin", before=first.next_cursor, limit=2)
    assert [h.seq for h in first.hits] + [h.seq for h in second.hits] == [3, 2, 1]


# --- Edits and deletions reach search through the persistence job ----------------------------


post = post_message  # stored as the consumer stores it (Redis first)


def edit(room: Room, seq: int, body: str) -> None:
    async def run():
        try:
            await changes.edit(room_id=room.pk, seq=seq, body=body, at="2026-01-01T12:05:00.000Z")
        finally:
            await close_async_clients_for_running_loop()

    async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_edits_and_deletions_written_by_the_persistence_job_are_what_search_finds(alice, bob, public_room):
    first = post(public_room, alice, "the meeting is on monday")
    second = post(public_room, alice, "bring biscuits")
    assert found(bob, "monday") == []  # only in Redis until the job writes it
    room_persist(room_id=public_room.pk)
    assert found(bob, "monday") == ["the meeting is on monday"]

    edit(public_room, first, "the meeting is on tuesday")
    # PostgreSQL's row still says monday; Redis's body does not: not found for it any more.
    assert found(bob, "monday") == []
    [pending] = message_search(user=bob, q="meeting").hits  # PostgreSQL's row, Redis's body
    assert pending.edited and pending.excerpt == "the <mark>meeting</mark> is on tuesday"
    room_persist(room_id=public_room.pk)
    assert found(bob, "monday") == []
    assert found(bob, "tuesday") == ["the meeting is on tuesday"]

    changes.delete(room_id=public_room.pk, seq=second, at="2026-01-01T12:06:00.000Z", by=alice.pk, hidden=False)
    room_persist(room_id=public_room.pk)
    assert Message.objects.get(room=public_room, seq=second).deleted_at is not None
    assert found(bob, "biscuits") == []


# --- The page ------------------------------------------------------------------------------


def test_the_search_page_needs_a_signed_in_user(client):
    response = client.get(reverse("search"), {"q": "hello"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_search_page_lists_highlighted_results_that_open_the_room_at_the_message(client, alice, public_room):
    message = stored(public_room, alice, "look at <this> rainbow")
    client.force_login(alice)
    response = client.get(reverse("search"), {"q": "rainbow"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "look at &lt;this&gt; <mark>rainbow</mark>" in html
    assert f'href="/rooms/lobby/?around={message.seq}"' in html
    assert "may not appear yet" in html
    assert 'value="rainbow"' in html  # the top bar's box too


def test_the_search_page_shows_fifty_results_and_a_link_to_older_ones(client, alice, public_room):
    for i in range(51):
        stored(public_room, alice, f"echo {i}", minutes=i)
    client.force_login(alice)
    response = client.get(reverse("search"), {"q": "echo"})
    assert response.content.decode().count('class="search-result"') == 50
    assert response.context["page"].next_cursor
    older = client.get(reverse("search"), {"q": "echo", "before": response.context["page"].next_cursor})
    assert older.content.decode().count('class="search-result"') == 1
    assert "Older results" not in older.content.decode()


def test_the_search_page_shows_nothing_to_an_outsider_and_says_so(client, alice, charlie, private_room):
    stored(private_room, alice, "classified")
    client.force_login(charlie)
    html = client.get(reverse("search"), {"q": "classified"}).content.decode()
    assert "classified" not in html.replace('value="classified"', "").replace("Search: classified", "")
    assert "Nothing found." in html


def test_a_bad_cursor_starts_from_the_newest(client, alice, public_room):
    stored(public_room, alice, "apple")
    client.force_login(alice)
    response = client.get(reverse("search"), {"q": "apple", "before": "nonsense"})
    assert response.status_code == 200 and len(response.context["page"].hits) == 1


@pytest.mark.parametrize("q", ["\x00", "apple\x00", "in:lob\x00by apple", "from:@al\x00ice"])
def test_a_nul_in_the_query_is_a_space_not_a_500(client, alice, public_room, q):
    """PostgreSQL text cannot hold NUL (no message body does: frames.body refuses it), and a
    query holding one was passed to it as it was (found by tests/hostile/test_http_fuzz.py)."""
    stored(public_room, alice, "apple")
    client.force_login(alice)
    response = client.get(reverse("search"), {"q": q})
    assert response.status_code == 200
    assert search_query_parse(q) == search_query_parse(q.replace("\x00", " "))


def test_searches_past_the_limit_answer_429_with_retry_after_per_user(client, settings, alice, bob, public_room):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "search": "3/minute"}
    stored(public_room, alice, "apple pie")
    client.force_login(alice)
    for q in ("apple", "pie", "apple pie"):
        assert client.get(reverse("search"), {"q": q}).status_code == 200
    refused = client.get(reverse("search"), {"q": "apple"})
    assert refused.status_code == 429
    assert 50 < int(refused["Retry-After"]) <= 60
    html = refused.content.decode()
    assert "You have searched too often. Try again in 1 minute." in html
    assert "apple pie" not in html  # the view did not run
    # Another user has a count of their own.
    other = Client()
    other.force_login(bob)
    assert other.get(reverse("search"), {"q": "apple"}).status_code == 200


def test_the_search_page_without_a_query_is_not_counted(client, settings, alice, public_room):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "search": "1/minute"}
    stored(public_room, alice, "apple")
    client.force_login(alice)
    for params in ({}, {"q": ""}, {"q": "   "}):
        assert client.get(reverse("search"), params).status_code == 200
    assert client.get(reverse("search"), {"q": "apple"}).status_code == 200
    assert client.get(reverse("search"), {"q": "apple"}).status_code == 429
    assert client.get(reverse("search")).status_code == 200


def test_each_page_of_results_counts_as_a_search(client, settings, alice, public_room):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "search": "2/minute"}
    for i in range(51):
        stored(public_room, alice, f"echo {i}", minutes=i)
    client.force_login(alice)
    first = client.get(reverse("search"), {"q": "echo"})
    older = {"q": "echo", "before": first.context["page"].next_cursor}
    assert client.get(reverse("search"), older).status_code == 200
    assert client.get(reverse("search"), older).status_code == 429


# --- Opening a room around a message --------------------------------------------------------


@pytest.fixture
def long_room(alice):
    room = room_create(creator=alice, name="Long")
    for i in range(1, 201):
        stored(room, alice, f"message {i}", minutes=i)
    return room


def test_the_history_api_returns_the_page_around_a_message(client, alice, long_room):
    client.force_login(alice)
    data = client.get(reverse("room-messages", args=[long_room.slug]), {"around": 100, "limit": 50}).json()
    seqs = [m["seq"] for m in data["messages"]]
    assert seqs == list(range(75, 125))
    assert data["has_more"] and data["has_newer"]
    bad = client.get(reverse("room-messages", args=[long_room.slug]), {"around": 100, "before": 5})
    assert bad.status_code == 400


def test_the_room_page_opens_around_a_message_with_the_newer_ones_behind_a_button(client, alice, long_room):
    client.force_login(alice)
    response = client.get(reverse("room-detail", args=[long_room.slug]), {"around": 30})
    html = response.content.decode()
    assert 'id="seq-30"' in html and 'id="seq-5"' in html and 'id="seq-54"' in html
    assert 'id="seq-55"' not in html and 'id="seq-200"' not in html
    assert 'data-around="30"' in html
    assert 'data-last-seq="200"' in html  # live messages follow the latest
    assert 'id="load-newer"' in html


def test_an_outsider_cannot_open_a_private_room_around_a_message(client, alice, charlie, private_room):
    stored(private_room, alice, "hush")
    client.force_login(charlie)
    assert client.get(reverse("room-detail", args=[private_room.slug]), {"around": 1}).status_code == 404
    assert client.get(reverse("room-messages", args=[private_room.slug]), {"around": 1}).status_code == 404


def test_words_phrases_exclusions_and_or_find_the_same_on_both_databases(alice, public_room):
    """PostgreSQL's websearch_to_tsquery and SQLite's FTS5 (fts5_query): the same language."""
    stored(public_room, alice, "Deploy <now> please", minutes=1)
    stored(public_room, alice, "we rolled back the apples", minutes=2)
    stored(public_room, alice, "back, rolled pears", minutes=3)
    [hit] = message_search(user=alice, q="deploying").hits
    assert hit.excerpt == "<mark>Deploy</mark> &lt;now&gt; please"
    assert found(alice, '"rolled back"') == ["we rolled back the apples"]
    assert found(alice, "rolled -apples") == ["back, rolled pears"]
    assert found(alice, 'rolled -"rolled back"') == ["back, rolled pears"]
    assert found(alice, "apples or pears") == ["back, rolled pears", "we rolled back the apples"]
    assert found(alice, "-rolled") == ["Deploy &lt;now&gt; please"]
    assert found(alice, "deploy or") == ["Deploy &lt;now&gt; please"]


def test_query_syntax_of_the_user_is_never_fts5_syntax(alice, public_room):
    stored(public_room, alice, "NEAR the column: body* AND (stars)", minutes=1)
    for q in ["NEAR(", "body*", "column:", "(stars", '"unclosed', "AND", "^start", "*", "'"]:
        message_search(user=alice, q=q)  # no error, whatever the database
    assert found(alice, "stars)") == ["NEAR the column: body* AND (stars)"]
