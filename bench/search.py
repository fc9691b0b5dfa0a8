"""python -m bench.search [--messages N] [--queries N] [--reuse] [--docs FILE | --no-docs]

How fast is search (messaging/search/) over a big history? Loads N messages (default
1,000,000) across 2,000 rooms into a database of its own (``pubsub_bench_search``, recreated
and migrated; COPY, the indexes built after), then runs mixed queries (default 200: common,
medium and rare words, two words, a phrase, ``in:``, ``from:``, a word nobody wrote) through
``message_search``, the selector the page uses, as a user who belongs to 30 rooms, and prints
p50/p95/p99. Writes them into docs/benchmarks.md between the ``search`` markers (the full
``make bench`` keeps that section) and as JSON in bench/results/search.json.

The data is generated deterministically (``--seed``): a vocabulary of 20,000 made-up words
used with Zipf's law (as words are), message lengths of 2 to 40 words, rooms of Zipf-like
sizes of which 10% are public, 5,000 authors of uneven activity, 1% of the messages deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench import fixtures

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/pubsub_bench_search"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
SECTION_START = "<!-- search: written by bench/search.py, kept by the next run -->"
SECTION_END = "<!-- /search -->"

ROOMS = 2_000
PUBLIC_SHARE = 0.10
USERS = 5_000
VOCABULARY = 20_000
SEARCHER_ROOMS = 30  # 20 private, 10 public (membership of a public room changes nothing it may read)
DELETED_SHARE = 0.01
EDITED_SHARE = 0.02
SPAN = timedelta(days=365)
KINDS = ("common word", "medium word", "rare word", "two words", "phrase", "in:room word", "from:user word", "no match")

_ONSETS = ["", "b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "pl", "r", "s", "sh",
           "st", "t", "th", "tr", "v", "w", "z"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng"]


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """Made-up words of one to three syllables, most frequent first (so rank = index)."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        syllables = int(rng.choice([1, 2, 2, 3, 3, 3]))
        word = "".join(
            "".join(part[rng.integers(len(part))] for part in (_ONSETS, _VOWELS, _CODAS)) for _ in range(syllables)
        )
        if len(word) >= 3 and word not in seen:
            seen.add(word)
            words.append(word)
    # Short words are the frequent ones, as in any language.
    words.sort(key=lambda w: len(w) + rng.random() * 4)
    return words


def zipf_weights(n: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return weights / weights.sum()


class Dataset:
    def __init__(self, *, messages: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.messages = messages
        self.words = vocabulary(self.rng, VOCABULARY)
        self.word_weights = zipf_weights(VOCABULARY, 1.05)
        room_weights = zipf_weights(ROOMS, 0.8)
        self.room_of = np.sort(self.rng.choice(ROOMS, size=messages, p=room_weights))
        self.public = set(self.rng.choice(ROOMS, size=int(ROOMS * PUBLIC_SHARE), replace=False).tolist())
        self.author_of = self.rng.choice(USERS, size=messages, p=zipf_weights(USERS, 0.9))

    def bodies(self):
        """(room index, seq, author index, body, sent_at offset in seconds), room by room."""
        lengths = np.clip(self.rng.geometric(1 / 11, size=self.messages) + 1, 2, 40)
        words = self.rng.choice(VOCABULARY, size=int(lengths.sum()), p=self.word_weights)
        # Times: uniform over the span, ascending within a room (seq order).
        offsets = self.rng.random(self.messages) * SPAN.total_seconds()
        position, seq, previous_room = 0, 0, -1
        order = np.lexsort((offsets, self.room_of))
        for index in order:
            room = int(self.room_of[index])
            seq = seq + 1 if room == previous_room else 1
            previous_room = room
            n = int(lengths[index])
            body = " ".join(self.words[w] for w in words[position : position + n])
            position += n
            yield room, seq, int(self.author_of[index]), body, float(offsets[index])


def load(database_url: str, *, messages: int, seed: int, log) -> dict:
    """Recreate and fill the database; returns what it took."""
    import psycopg

    started = time.perf_counter()
    fixtures.recreate_database(database_url)
    data = Dataset(messages=messages, seed=seed)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    timings: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        first_room = conn.execute("SELECT nextval(pg_get_serial_sequence('rooms_room', 'id'))").fetchone()[0]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff,"
                " is_active, date_joined) FROM STDIN"
            ) as copy,
        ):
            for i in range(USERS + 1):
                name = "searcher" if i == USERS else f"user{i:04d}"
                copy.write_row((i + 1, "!", False, name, "", "", "", False, True, base))
        conn.execute("SELECT setval(pg_get_serial_sequence('auth_user', 'id'), %s)", (USERS + 1,))
        searcher_id = USERS + 1
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY rooms_room (id, name, slug, topic, visibility, created_by_id, created_at, locked,"
                " slow_mode_seconds) FROM STDIN"
            ) as copy,
        ):
            for r in range(ROOMS):
                name = f"{data.words[r % 500].title()} {r}"
                visibility = "public" if r in data.public else "private"
                copy.write_row((first_room + r, name, f"room-{r}", "", visibility, 1, base, False, 0))
        conn.execute("SELECT setval(pg_get_serial_sequence('rooms_room', 'id'), %s)", (first_room + ROOMS,))
        # The searcher: in 20 private rooms of all sizes and 10 public ones, banned from one big public room.
        private = [r for r in range(ROOMS) if r not in data.public]
        public = sorted(data.public)
        mine_private = private[:: max(1, len(private) // 20)][:20]
        mine_public = public[1 :: max(1, len(public) // 10)][:10]
        banned_from = public[0]
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY rooms_membership (user_id, room_id, role, joined_at, last_read_seq, banned, notify_level)"
                " FROM STDIN"
            ) as copy,
        ):
            for r in mine_private + mine_public:
                copy.write_row((searcher_id, first_room + r, "member", base, 0, False, "mentions"))
            copy.write_row((searcher_id, first_room + banned_from, "member", base, 0, True, "mentions"))

        conn.execute("DROP INDEX message_search_vector")
        conn.execute("DROP INDEX message_newest_first")
        t = time.perf_counter()
        deleted_every, edited_every = round(1 / DELETED_SHARE), round(1 / EDITED_SHARE)
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY messaging_message (room_id, seq, author_id, body, client_id, sent_at, edited_at, deleted_at, rev,"
                " also_in_room) FROM STDIN"
            ) as copy,
        ):
            for n, (room, seq, author, body, offset) in enumerate(data.bodies()):
                sent_at = base + timedelta(seconds=offset)
                copy.write_row(
                    (
                        first_room + room,
                        seq,
                        author + 1,
                        body,
                        uuid.UUID(int=(seed << 64) + n),
                        sent_at,
                        sent_at + timedelta(minutes=1) if n % edited_every == 7 else None,
                        sent_at + timedelta(minutes=2) if n % deleted_every == 3 else None,
                        seq,
                        False,
                    )
                )
                if n and n % 200_000 == 0:
                    log(f"  {n:,} messages copied")
        timings["copy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("CREATE INDEX message_search_vector ON messaging_message USING gin (search_vector)")
        timings["gin_index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute('CREATE INDEX message_newest_first ON messaging_message ("sent_at", "id")')
        timings["newest_first_index_s"] = time.perf_counter() - t
        conn.execute("VACUUM ANALYZE")
        sizes = conn.execute(
            "SELECT pg_table_size('messaging_message'), pg_relation_size('message_search_vector'),"
            " pg_relation_size('message_newest_first'), count(*) FROM messaging_message"
        ).fetchone()
        readable_share = conn.execute(
            "SELECT avg((r.visibility = 'public' AND r.id <> %s OR r.id = ANY(%s))::int)"
            " FROM messaging_message m JOIN rooms_room r ON r.id = m.room_id",
            (first_room + banned_from, [first_room + r for r in mine_private + mine_public]),
        ).fetchone()[0]
    timings["load_s"] = time.perf_counter() - started
    return {
        "messages": sizes[3],
        "table_mib": round(sizes[0] / 2**20),
        "gin_index_mib": round(sizes[1] / 2**20),
        "newest_first_index_mib": round(sizes[2] / 2**20),
        "readable_share": round(float(readable_share), 3),
        **{k: round(v, 1) for k, v in timings.items()},
    }


def make_queries(count: int, *, seed: int, searcher) -> list[tuple[str, str]]:
    """``count`` (kind, q) pairs, the kinds in turn."""
    from messaging.models import Message
    from rooms.models import Room
    from rooms.selectors import room_ids_readable_by

    rng = np.random.default_rng(seed + 1)
    words = vocabulary(np.random.default_rng(seed), VOCABULARY)  # the dataset's own, rank for rank
    readable = room_ids_readable_by(user=searcher)
    slugs = dict(Room.objects.filter(pk__in=readable).values_list("pk", "slug"))
    sample = list(
        Message.objects.filter(room_id__in=readable, deleted_at__isnull=True)
        .order_by("?")
        .values_list("room_id", "author__username", "body")[: count * 2]
    )

    def word(lo: int, hi: int) -> str:
        return words[int(rng.integers(lo, hi))]

    queries = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        room_id, author, body = sample[i]
        if kind == "common word":
            q = word(5, 100)
        elif kind == "medium word":
            q = word(300, 2_000)
        elif kind == "rare word":
            q = word(8_000, VOCABULARY)
        elif kind == "two words":
            q = f"{word(5, 100)} {word(300, 2_000)}"
        elif kind == "phrase":
            tokens = body.split()
            start = int(rng.integers(0, len(tokens) - 1))
            q = f'"{tokens[start]} {tokens[start + 1]}"'
        elif kind == "in:room word":
            q = f"in:{slugs[room_id]} {word(5, 300)}"
        elif kind == "from:user word":
            q = f"from:{author} {word(5, 300)}"
        else:
            q = f"qx{i}zzv"
        queries.append((kind, q))
    return queries


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p)) if values else 0.0


def measure(queries: list[tuple[str, str]], *, warmups: list[tuple[str, str]], searcher) -> dict:
    from messaging.search import message_search

    for _, q in warmups:
        message_search(user=searcher, q=q)
    times: list[float] = []
    by_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    hits: dict[str, list[int]] = {k: [] for k in KINDS}
    slowest: list[tuple[float, str]] = []
    for kind, q in queries:
        t = time.perf_counter()
        page = message_search(user=searcher, q=q)
        ms = (time.perf_counter() - t) * 1000
        times.append(ms)
        by_kind[kind].append(ms)
        hits[kind].append(len(page.hits))
        slowest.append((ms, q))
    slowest.sort(reverse=True)

    def figures(values: list[float]) -> dict:
        return {
            "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1),
        }

    return {
        "queries": len(times),
        **figures(times),
        "mean_ms": round(statistics.fmean(times), 1),
        "kinds": {
            k: {**figures(v), "queries": len(v), "mean_hits": round(statistics.fmean(hits[k]), 1)}
            for k, v in by_kind.items()
            if v
        },
        "slowest": [{"ms": round(ms, 1), "q": q} for ms, q in slowest[:5]],
    }


def markdown(results: dict) -> str:
    d, m = results["data"], results["measured"]
    rows = [
        f"| {kind} | {f['queries']} | {f['p50_ms']} | {f['p95_ms']} | {f['max_ms']} | {f['mean_hits']} |"
        for kind, f in m["kinds"].items()
    ]
    verdict = "met" if m["p95_ms"] < 100 else "**missed**"
    return "\n".join(
        [
            SECTION_START,
            "## Search",
            "",
            f"Written by `make bench-search` (`{results['command']}`, {results['when']}, commit {results['commit']}):"
            f" {m['queries']} queries through `messaging.search.message_search` (the selector of `/search/`,"
            f" highlighting and the Redis check of pending edits and deletions included) over"
            f" **{d['messages']:,} messages** in {ROOMS:,} rooms ({PUBLIC_SHARE:.0%} public), as a user in"
            f" {SEARCHER_ROOMS} rooms (20 private) and banned from one public room, who may read"
            f" {d['readable_share']:.0%} of the messages. PostgreSQL {results['postgresql']}, on the same"
            f" {results['cores']} cores as everything else; the queries run one after the other, after"
            f" {results['warmup']} unmeasured ones.",
            "",
            f"**p50 {m['p50_ms']} ms, p95 {m['p95_ms']} ms, p99 {m['p99_ms']} ms** (max {m['max_ms']} ms):"
            f" the target, p95 under 100 ms, is {verdict}.",
            "",
            "| query | n | p50 ms | p95 ms | max ms | results (mean, 50 a page) |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Loading: {d['copy_s']} s to COPY the messages (the generated `search_vector` computed on the way),"
            f" {d['gin_index_s']} s to build the GIN index, {d['newest_first_index_s']} s for `(sent_at, id)`."
            f" Sizes: table {d['table_mib']} MiB (with the tsvector), GIN index {d['gin_index_mib']} MiB,"
            f" `(sent_at, id)` {d['newest_first_index_mib']} MiB.",
            "",
            "Slowest: " + "; ".join(f"`{s['q']}` {s['ms']} ms" for s in m["slowest"]),
            SECTION_END,
        ]
    )


def kept_section(text: str) -> str:
    from bench.docs_sections import kept_between

    return kept_between(text, SECTION_START, SECTION_END)


def write_docs(path: Path, section: str) -> None:
    """Replace the search section of the report, or add it after the hand-written analysis."""
    from bench.docs_sections import ANALYSIS_END, write_section

    write_section(path, section, start=SECTION_START, end=SECTION_END, after=(ANALYSIS_END,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=40, help="queries run first, not measured")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="keep the database of the last run if it is complete")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_SEARCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_SEARCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    parser.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.time()
    data_file = ROOT / "var" / f"bench-search-{fixtures.database_name(args.database_url)}.json"  # for --reuse
    data = None
    if args.reuse and data_file.exists():
        data = json.loads(data_file.read_text())
        if data.get("messages_asked") != args.messages or data.get("seed") != args.seed:
            data = None
        else:
            import psycopg

            try:
                with psycopg.connect(args.database_url) as conn:
                    count = conn.execute("SELECT count(*) FROM messaging_message").fetchone()[0]
            except psycopg.Error:
                count = None
            if count != data["messages"]:
                data = None
    if data is None:
        log(f"Loading {args.messages:,} messages into {fixtures.database_name(args.database_url)} ...")
        data = load(args.database_url, messages=args.messages, seed=args.seed, log=log)
        data.update(messages_asked=args.messages, seed=args.seed)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        data_file.write_text(json.dumps(data, indent=2) + "\n")
    log(f"Data: {data}")

    fixtures.setup_django(args.database_url, args.redis_url)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench.summary import git_commit
    from pubsub_site.redis.client import get_redis

    get_redis(url=args.redis_url).flushdb()
    searcher = get_user_model().objects.get(username="searcher")
    queries = make_queries(args.queries + args.warmup, seed=args.seed, searcher=searcher)
    measured = measure(queries[args.warmup :], warmups=queries[: args.warmup], searcher=searcher)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgresql = cursor.fetchone()[0].split()[0]
    results = {
        "command": " ".join(["python -m bench.search", *(sys.argv[1:] if argv is None else argv)]),
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "postgresql": postgresql,
        "cores": os.cpu_count(),
        "warmup": args.warmup,
        "data": data,
        "measured": measured,
        "seconds": round(time.time() - started),
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    log(json.dumps(measured, indent=2))
    log(
        f"\nsearch over {data['messages']:,} messages, {measured['queries']} queries: p50 {measured['p50_ms']} ms,"
        f" p95 {measured['p95_ms']} ms, p99 {measured['p99_ms']} ms (max {measured['max_ms']} ms)"
    )
    if not args.no_docs:
        write_docs(Path(args.docs), markdown(results))
        log(f"Markdown: {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
