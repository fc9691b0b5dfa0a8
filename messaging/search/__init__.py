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
- SQLite (the ``make run`` default): FTS5 on ``messaging_message_fts`` (messaging/search/index.py:
  kept by triggers on every write, English stems by the ``porter`` tokenizer, no stop words),
  queried with the same language turned into an FTS5 query (``fts5_query``): words (all must
  match), "a phrase", ``-word``, ``a or b``. Matches are marked by FTS5's ``highlight`` over
  the page's bodies in a scratch in-memory FTS5 table with the same tokenizer, which also
  decides whether a body edited in Redis still matches.
- ``in:room`` (slug or name, quoted if it has spaces) and ``from:user`` (username) are taken
  out of the query; several of one kind mean any of them.
- Results are newest first (``sent_at``, then id), 50 a page, the next page after a cursor.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
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

from messaging.models import Message
from messaging.search.index import FTS_TABLE, TOKENIZE
from messaging.store.keys import RoomKeys
from pubsub_site.redis.client import get_redis
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
_FTS5_WORD = re.compile(r"[^\W_]+")  # what FTS5's unicode61 tokenizer takes as words (it splits at "_")
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


def fts5_query(text: str, *, positive_only: bool = False) -> str | None:
    """The websearch text as an FTS5 query: words and "phrases" must all match, ``a or b`` is
    either, ``-word`` and ``-"a phrase"`` must not; None when nothing is wanted (FTS5's NOT
    needs something to its left: ``fts5_unwanted`` then). Each term becomes a quoted FTS5
    phrase of its words only, so no text of the user is ever FTS5 syntax.
    ``positive_only``: every wanted term as an alternative (for highlighting)."""
    groups, excluded = _fts5_terms(text)
    if not groups:
        return None
    if positive_only:
        return " OR ".join(phrase for group in groups for phrase in group)
    query = " AND ".join("(" + " OR ".join(group) + ")" for group in groups)
    for phrase in excluded:
        query = f"({query}) NOT {phrase}"
    return query


def fts5_unwanted(text: str) -> str | None:
    """A query of only ``-word``s: the FTS5 query of what must not match (PostgreSQL then finds
    every message without them, and so does SQLite)."""
    groups, excluded = _fts5_terms(text)
    return " OR ".join(excluded) if excluded and not groups else None


def _fts5_terms(text: str) -> tuple[list[list[str]], list[str]]:
    """(every group must match, each any of its phrases; no phrase of these may match)."""
    groups: list[list[str]] = []
    excluded: list[str] = []
    either = False
    for match in _TOKEN.finditer(text):
        quoted = match.group(2) is not None
        value = match.group(2) if quoted else match.group(4)
        if not quoted and value.lower() == "or":
            either = bool(groups)
            continue
        words = _FTS5_WORD.findall(value)
        if not words:
            continue
        phrase = '"' + " ".join(words) + '"'
        if match.group(1 if quoted else 3):
            excluded.append(phrase)
        elif either:
            groups[-1].append(phrase)
        else:
            groups.append([phrase])
        either = False
    return groups, excluded


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
    postgres = connection.vendor == "postgresql"  # the one switch: else SQLite's FTS5
    query = SearchQuery(parsed.text, config=SEARCH_CONFIG, search_type="websearch") if postgres else None
    if parsed.text:
        messages = _matching(messages, parsed.text, query)
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
    if parsed.text and edited_since:
        for key in _not_matching({key: bodies[key] for key in edited_since}, parsed.text, postgres=postgres):
            del bodies[key]
    if not parsed.text:
        marked = {key: _unmarked(body) for key, body in bodies.items()}
    elif postgres:
        marked = _marked_by_lexemes(bodies, parsed.text)
    else:
        marked = _marked_by_fts5(bodies, parsed.text)
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
    """PostgreSQL: ``query`` against the tsvector column; SQLite (``query`` None): FTS5."""
    if query is not None:
        column = RawSQL(f'"{Message._meta.db_table}"."search_vector"', [], output_field=SearchVectorField())  # noqa: S611 (no user text)
        return messages.annotate(document=column).filter(document=query)
    sql = f'SELECT rowid FROM "{FTS_TABLE}" WHERE "{FTS_TABLE}" MATCH %s'  # noqa: S608 (a fixed name; the query a parameter)
    if (wanted := fts5_query(text)) is not None:
        return messages.filter(pk__in=RawSQL(sql, [wanted]))  # noqa: S611 (fts5_query quotes every term)
    if (unwanted := fts5_unwanted(text)) is not None:
        return messages.exclude(pk__in=RawSQL(sql, [unwanted]))  # noqa: S611 (quoted as well)
    return messages.none()


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


def _not_matching(bodies: dict[tuple[int, int], str], text: str, *, postgres: bool) -> set[tuple[int, int]]:
    """The keys of the bodies that the query does not match, as ``_matching`` decides."""
    keys = list(bodies)
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i FROM unnest(%s::text[]) WITH ORDINALITY AS t(body, i)"
                " WHERE NOT to_tsvector(%s::regconfig, body) @@ websearch_to_tsquery(%s::regconfig, %s)",
                [[bodies[key] for key in keys], SEARCH_CONFIG, SEARCH_CONFIG, text],
            )
            return {keys[i - 1] for (i,) in cursor}
    wanted, unwanted = fts5_query(text), fts5_unwanted(text)
    if wanted is None and unwanted is None:
        return set(keys)
    with _fts5_scratch(keys, bodies) as scratch:
        rows = scratch.execute("SELECT rowid FROM t WHERE t MATCH ?", [wanted or unwanted])
        matched = {keys[rowid - 1] for (rowid,) in rows}
    return set(keys) - matched if wanted is not None else matched


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


def _marked_by_fts5(bodies: dict[tuple[int, int], str], text: str) -> dict[tuple[int, int], str]:
    """The bodies with every match of a wanted word or phrase marked, as SQLite's FTS5 matches
    them (the same tokenizer as the index: ``deploying`` for ``deploy``), by ``highlight``."""
    keys = list(bodies)
    marked = {key: _unmarked(body) for key, body in bodies.items()}
    wanted = fts5_query(text, positive_only=True)
    if wanted is None or not keys:
        return marked
    with _fts5_scratch(keys, marked) as scratch:
        rows = scratch.execute(
            "SELECT rowid, highlight(t, 0, ?, ?) FROM t WHERE t MATCH ?", [MARK_START, MARK_STOP, wanted]
        )
        for rowid, body in rows:
            marked[keys[rowid - 1]] = body
    return marked


@contextlib.contextmanager
def _fts5_scratch(keys: list, bodies: dict) -> Iterator[sqlite3.Connection]:
    """A private in-memory FTS5 table ``t`` of these bodies (rowid = position in ``keys``, from 1),
    tokenized as the index is: for the few bodies of one page of results."""
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, tokenize='{TOKENIZE}')")
        scratch.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", [(i, bodies[k]) for i, k in enumerate(keys, 1)])
        yield scratch
    finally:
        scratch.close()


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


_BIGINT_MAX = 2**63 - 1


def _cursor_format(sent_at: datetime, pk: int) -> str:
    return f"{(sent_at - _EPOCH) // timedelta(microseconds=1)}.{pk}"


def _cursor_parse(raw: str | None) -> tuple[datetime, int] | None:
    """A cursor of ``_cursor_format``; anything else starts from the newest."""
    if not raw:
        return None
    micros, _, pk = raw.partition(".")
    # ASCII digits only (str.isdigit takes "²", which int() refuses), and values a datetime and
    # a bigint can hold: ?before=9999999999999999999.1 overflowed into a 500.
    if not (micros.isascii() and micros.isdigit() and pk.isascii() and pk.isdigit()):
        return None
    if len(micros) >= 20 or len(pk) >= 20 or int(pk) > _BIGINT_MAX:
        return None
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except OverflowError:
        return None
