"""Search over every message a user may read: the query language, the selector, the highlighting.

- What is searched is PostgreSQL's copy of the messages: a message still only in the Redis
  buffer (sent in the last second or so, before the persistence job wrote it) is not found
  yet, and the results page says so. Edits and deletions reach the rows through the same
  job; a deletion or an edit that Redis has and PostgreSQL not yet is applied to the page of
  results from Redis, so a deleted message is never shown, and a result always shows the
  message as it reads now and matches the query as it reads now (an edit that took the words
  out drops it; one that put them in finds it once the job has written it).
- PostgreSQL: full-text search on ``search_vector``, a stored generated tsvector of the body
  (``english``: stemmed, stop words left out) with a GIN index (migration 0003), queried with
  ``websearch_to_tsquery``: words (all must match), "a phrase", ``-word``, ``a or b``.
  Excerpts come from ``ts_headline``.
- Elsewhere (SQLite, the development default): every word and phrase as ``icontains``,
  ``-word`` excluded; highlighting in Python.
- ``in:room`` (slug or name, quoted if it has spaces) and ``from:user`` (username) are taken
  out of the query; several of one kind mean any of them.
- Results are newest first (``sent_at``, then id), 50 a page, the next page after a cursor.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery, SearchVectorField
from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from messaging.buffer import RoomKeys
from messaging.models import Message
from pubsub_site.redis_client import get_redis
from rooms.models import Room
from rooms.selectors import room_ids_readable_by

RESULTS_PER_PAGE = 50
QUERY_MAX_CHARS = 300
SEARCH_CONFIG = "english"  # the configuration of the generated column (migration 0003)
# Around the matches while the text is still plain; the text is escaped, then they become <mark>.
MARK_START, MARK_STOP = "\x02", "\x03"
EXCERPT_CHARS = 300  # a longer message shows this much around its first match
# Words as highlighting sees them: "e-mail", "don't", "example.com" are one each.
_WORD = re.compile(r"\w+(?:[-.@'\u2019]\w+)*")
_LEXEME = re.compile(r"'((?:[^']|'')*)'")

_FILTER = re.compile(r'(?<!\S)(in|from):(?:"([^"]*)"|(\S*))', re.IGNORECASE)
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ParsedQuery:
    """A search box's text: the filters taken out, the rest for full-text search."""

    text: str = ""
    rooms: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.text or self.rooms or self.authors)


def search_query_parse(q: str) -> ParsedQuery:
    """``deploy "rolled back" in:ops from:@bob`` -> text ``deploy "rolled back"``, rooms ``ops``, authors ``bob``."""
    rooms: list[str] = []
    authors: list[str] = []

    def take(match: re.Match) -> str:
        kind = match.group(1).lower()
        value = (match.group(2) if match.group(2) is not None else match.group(3)).strip()
        value = value.lstrip("#") if kind == "in" else value.lstrip("@")
        if value:
            (rooms if kind == "in" else authors).append(value)
        return " "

    # A NUL is a space: no stored text holds one (PostgreSQL cannot), and PostgreSQL refuses
    # a query that does.
    text = _FILTER.sub(take, q[:QUERY_MAX_CHARS].replace("\x00", " "))
    return ParsedQuery(text=" ".join(text.split()), rooms=tuple(rooms), authors=tuple(authors))


@dataclass(frozen=True)
class _Term:
    text: str
    excluded: bool


def _terms(text: str) -> list[_Term]:
    """Words and "phrases", with ``-`` for exclusion: the part of websearch syntax both databases share."""
    terms = []
    for match in _TOKEN.finditer(text):
        if match.group(2) is not None:
            value, excluded = match.group(2).strip(), bool(match.group(1))
        else:
            value, excluded = match.group(4), bool(match.group(3))
            if value.lower() == "or":
                continue
        if value:
            terms.append(_Term(value, excluded))
    return terms


@dataclass(frozen=True)
class SearchHit:
    room_slug: str
    room_name: str
    seq: int
    author: str
    sent_at: datetime
    excerpt: SafeString  # escaped text, the matches in <mark>
    edited: bool


@dataclass(frozen=True)
class SearchPage:
    query: ParsedQuery
    hits: list[SearchHit] = field(default_factory=list)
    next_cursor: str | None = None
    unknown_rooms: tuple[str, ...] = ()  # in: values that name no room the user may read
    unknown_authors: tuple[str, ...] = ()


def message_search(
    *, user: AbstractBaseUser, q: str, before: str | None = None, limit: int = RESULTS_PER_PAGE
) -> SearchPage:
    """The messages the user may read that match ``q``, newest first, ``limit`` a page.

    ``before`` is the ``next_cursor`` of the page before. Access is decided by
    ``rooms.selectors.room_ids_readable_by``, as for reading a room.
    """
    parsed = search_query_parse(q)
    if parsed.is_empty:
        return SearchPage(query=parsed)
    room_ids = room_ids_readable_by(user=user)
    unknown_rooms: tuple[str, ...] = ()
    if parsed.rooms:
        room_ids, unknown_rooms = _rooms_named(parsed.rooms, among=room_ids)
    author_ids: list[int] | None = None
    unknown_authors: tuple[str, ...] = ()
    if parsed.authors:
        author_ids, unknown_authors = _users_named(parsed.authors)
    empty = SearchPage(query=parsed, unknown_rooms=unknown_rooms, unknown_authors=unknown_authors)
    if not room_ids or author_ids == []:
        return empty

    messages = Message.objects.filter(room_id__in=room_ids, deleted_at__isnull=True, hidden_by__isnull=True)
    if author_ids is not None:
        messages = messages.filter(author_id__in=author_ids)
    full_text = connection.vendor == "postgresql"
    query = SearchQuery(parsed.text, config=SEARCH_CONFIG, search_type="websearch") if parsed.text else None
    if query is not None:
        messages = _matching(messages, parsed.text, query if full_text else None)
    cursor = _cursor_parse(before)
    if cursor is not None:
        sent_at, pk = cursor
        messages = messages.filter(Q(sent_at__lt=sent_at) | Q(sent_at=sent_at, pk__lt=pk))
    rows = list(
        messages.order_by("-sent_at", "-pk").values_list(
            "pk", "room_id", "seq", "author_id", "sent_at", "body", "edited_at", "rev"
        )[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return empty

    pending = _pending_changes(rows)
    bodies = {}
    edited_since = set()  # bodies from Redis, which PostgreSQL has not matched against the query
    for _, room_id, seq, _, _, body, _, rev in rows:
        edit, deleted = pending.get((room_id, seq), (None, False))
        if deleted:
            continue
        if edit is not None and edit["rev"] > rev:
            bodies[(room_id, seq)] = edit["body"]
            edited_since.add((room_id, seq))
        else:
            bodies[(room_id, seq)] = body
    if query is not None and edited_since:
        for key in _not_matching({key: bodies[key] for key in edited_since}, parsed.text, full_text=full_text):
            del bodies[key]
    if full_text and query is not None:
        marked = _marked_by_lexemes(bodies, parsed.text)
    else:
        terms = [t.text for t in _terms(parsed.text) if not t.excluded]
        marked = {key: _marked_by_substrings(text, terms) for key, text in bodies.items()}
    rooms = {r.pk: r for r in Room.objects.filter(pk__in={row[1] for row in rows}).only("slug", "name")}
    names = dict(get_user_model().objects.filter(pk__in={row[3] for row in rows}).values_list("pk", "username"))
    hits = []
    for _, room_id, seq, author_id, sent_at, _, edited_at, _ in rows:
        if (room_id, seq) not in bodies:
            continue  # deleted in Redis, or edited there to no longer match; PostgreSQL hears of it within a second
        edit = pending.get((room_id, seq), (None, False))[0]
        room = rooms[room_id]
        hits.append(
            SearchHit(
                room_slug=room.slug,
                room_name=room.name,
                seq=seq,
                author=names.get(author_id, "?"),
                sent_at=sent_at,
                excerpt=excerpt_html(marked[(room_id, seq)]),
                edited=edited_at is not None or edit is not None,
            )
        )
    last = rows[-1]
    return SearchPage(
        query=parsed,
        hits=hits,
        next_cursor=_cursor_format(last[4], last[0]) if more else None,
        unknown_rooms=unknown_rooms,
        unknown_authors=unknown_authors,
    )


def _rooms_named(names: tuple[str, ...], *, among: list[int]) -> tuple[list[int], tuple[str, ...]]:
    wanted = Q()
    for name in names:
        wanted |= Q(slug__iexact=name) | Q(name__iexact=name)
    found = list(Room.objects.filter(wanted, pk__in=among).values_list("pk", "slug", "name"))
    known = {value.lower() for _, slug, name in found for value in (slug, name)}
    return [pk for pk, _, _ in found], tuple(n for n in names if n.lower() not in known)


def _users_named(names: tuple[str, ...]) -> tuple[list[int], tuple[str, ...]]:
    wanted = Q()
    for name in names:
        wanted |= Q(username__iexact=name)
    found = list(get_user_model().objects.filter(wanted).values_list("pk", "username"))
    known = {username.lower() for _, username in found}
    return [pk for pk, _ in found], tuple(n for n in names if n.lower() not in known)


def _matching(messages: QuerySet, text: str, query: SearchQuery | None) -> QuerySet:
    if query is not None:
        column = RawSQL(f'"{Message._meta.db_table}"."search_vector"', [], output_field=SearchVectorField())  # noqa: S611 (no user text)
        return messages.annotate(document=column).filter(document=query)
    terms = _terms(text)
    if not any(not t.excluded for t in terms):
        return messages.none()
    for term in terms:
        messages = (
            messages.exclude(body__icontains=term.text) if term.excluded else messages.filter(body__icontains=term.text)
        )
    return messages


def _pending_changes(rows: list[tuple]) -> dict[tuple[int, int], tuple[dict | None, bool]]:
    """Edits and deletions Redis holds for these messages: (room, seq) -> (edit, deleted).

    One pipeline per Redis server, two HMGETs per room."""
    seqs_by_room: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        seqs_by_room[row[1]].append(row[2])
    by_server: dict[int, tuple] = {}
    for room_id in seqs_by_room:
        client = get_redis(room_id)
        by_server.setdefault(id(client), (client, []))[1].append(room_id)
    found: dict[tuple[int, int], tuple[dict | None, bool]] = {}
    for client, room_ids in by_server.values():
        pipe = client.pipeline(transaction=False)
        for room_id in room_ids:
            keys = RoomKeys(room_id)
            pipe.hmget(keys.edits, seqs_by_room[room_id])
            pipe.hmget(keys.deletions, seqs_by_room[room_id])
        replies = pipe.execute()
        for index, room_id in enumerate(room_ids):
            edits, deletions = replies[2 * index], replies[2 * index + 1]
            for seq, edit, deletion in zip(seqs_by_room[room_id], edits, deletions, strict=True):
                if edit or deletion:
                    found[(room_id, seq)] = (orjson.loads(edit) if edit else None, bool(deletion))
    return found


def _not_matching(bodies: dict[tuple[int, int], str], text: str, *, full_text: bool) -> set[tuple[int, int]]:
    """The keys of the bodies that the query does not match, as ``_matching`` decides."""
    keys = list(bodies)
    if full_text:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i FROM unnest(%s::text[]) WITH ORDINALITY AS t(body, i)"
                " WHERE NOT to_tsvector(%s::regconfig, body) @@ websearch_to_tsquery(%s::regconfig, %s)",
                [[bodies[key] for key in keys], SEARCH_CONFIG, SEARCH_CONFIG, text],
            )
            return {keys[i - 1] for (i,) in cursor}
    terms = _terms(text)
    return {
        key
        for key, body in bodies.items()
        if any((term.text.lower() in body.lower()) == term.excluded for term in terms)
    }


def _marked_by_lexemes(bodies: dict[tuple[int, int], str], text: str) -> dict[tuple[int, int], str]:
    """The bodies with every word that matches a word of the query marked, as PostgreSQL matches
    them (``deploying`` for ``deploy``): the lexemes of the query, and of each distinct word of the
    bodies, from PostgreSQL in one query. (ts_headline would drop anything that looks like a tag.)"""
    words = sorted({w.lower() for body in bodies.values() for w in _WORD.findall(body)})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NULL, querytree(websearch_to_tsquery(%s::regconfig, %s))::text"
            " UNION ALL SELECT w, to_tsvector(%s::regconfig, w)::text FROM unnest(%s::text[]) AS w",
            [SEARCH_CONFIG, text, SEARCH_CONFIG, words],
        )
        lexemes_of = {word: {m.replace("''", "'") for m in _LEXEME.findall(vector)} for word, vector in cursor}
    wanted = lexemes_of.pop(None, set())

    def mark(match: re.Match) -> str:
        word = match.group(0)
        return f"{MARK_START}{word}{MARK_STOP}" if lexemes_of.get(word.lower(), set()) & wanted else word

    return {key: _WORD.sub(mark, _unmarked(body)) for key, body in bodies.items()}


def _marked_by_substrings(text: str, terms: list[str]) -> str:
    """Every case-insensitive occurrence of a term marked (where there is no full-text search)."""
    text = _unmarked(text)
    terms = sorted({t for t in terms if t}, key=len, reverse=True)
    if not terms:
        return text
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE)
    return pattern.sub(lambda m: f"{MARK_START}{m.group(0)}{MARK_STOP}", text)


def _unmarked(text: str) -> str:
    return text.replace(MARK_START, "").replace(MARK_STOP, "")


def excerpt_html(marked: str) -> SafeString:
    """Marked text -> escaped HTML with <mark> around the matches; a long one cut around its first match."""
    plain_length = len(_unmarked(marked))
    if plain_length > EXCERPT_CHARS:
        first = max(0, marked.find(MARK_START))
        start = max(0, first - EXCERPT_CHARS // 3)
        end = min(len(marked), start + EXCERPT_CHARS)
        if start > 0:
            start = marked.find(" ", start) + 1 or start  # from a word's start
        if end < len(marked):
            end = marked.rfind(" ", start, end) if marked.rfind(" ", start, end) > first else end
        piece = marked[start:end]
        if piece.count(MARK_START) > piece.count(MARK_STOP):
            piece += MARK_STOP
        marked = ("… " if start > 0 else "") + piece + (" …" if end < len(marked) else "")
    out = []
    for index, part in enumerate(re.split(f"[{MARK_START}{MARK_STOP}]", marked)):
        out.append(f"<mark>{escape(part)}</mark>" if index % 2 and part else escape(part))
    return mark_safe("".join(out))  # noqa: S308 (every part of the text was escaped above)


def _cursor_format(sent_at: datetime, pk: int) -> str:
    return f"{(sent_at - _EPOCH) // timedelta(microseconds=1)}.{pk}"


def _cursor_parse(raw: str | None) -> tuple[datetime, int] | None:
    """A cursor of ``_cursor_format``; anything else starts from the newest."""
    if not raw:
        return None
    micros, _, pk = raw.partition(".")
    if not (micros.isdigit() and pk.isdigit() and len(micros) < 20 and len(pk) < 20):
        return None
    return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
