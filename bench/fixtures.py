"""The benchmark's own database and data: users, session cookies and rooms, made through the ORM.

The benchmark never touches the developer's or the test suite's databases: it
refuses any database whose name does not start with ``pubsub_bench``, and
recreates that one at the start of every run.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

from bench.bare import ROOMS_KEY, SESSIONS_KEY

ROOT = Path(__file__).resolve().parent.parent
DATABASE_PREFIX = "pubsub_bench"


def room_id_start() -> int:
    return secrets.randbelow(1_000_000_000) + 1_000_000


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def recreate_database(url: str) -> None:
    """Drop and create the benchmark's database, then migrate it (a few seconds)."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    if not name.startswith(DATABASE_PREFIX):
        raise SystemExit(f"refusing to recreate database {name!r}: its name must start with {DATABASE_PREFIX!r}")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "pubsub_site.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    # Room ids from a random point: the site's channel layer names its PUBLISH channels
    # after room ids, and PUBLISH channels are not per Redis database, so another run on
    # the same Redis server (the test suite, another benchmark) would otherwise reach
    # this run's rooms with its messages.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setval(pg_get_serial_sequence('rooms_room', 'id'), %s)", (room_id_start(),))


def setup_django(database_url: str, redis_url: str, channel_layer: str = "pubsub") -> None:
    """Point this process at the benchmark's stores, then set Django up."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pubsub_site.settings",
            "DJANGO_ENV": "development",
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ROOM_REDIS_URLS": redis_url,
            "CHANNEL_REDIS_URLS": redis_url,
            "CHANNEL_LAYER": channel_layer,
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()


class Population:
    """Users with live sessions, made in bulk (one password hash, no per-user hashing)."""

    def __init__(self) -> None:
        self.users: list = []
        self.sessions: list[str] = []
        self.prefix = f"bench-{secrets.token_hex(3)}-"

    def grow(self, count: int) -> None:
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
        from django.contrib.auth.hashers import make_password
        from django.contrib.sessions.backends.db import SessionStore
        from django.contrib.sessions.models import Session
        from django.utils import timezone
        from django.utils.crypto import get_random_string

        user_model = get_user_model()
        missing = count - len(self.users)
        if missing <= 0:
            return
        unusable = make_password(None)
        start = len(self.users)
        made = user_model.objects.bulk_create(
            [user_model(username=f"{self.prefix}{start + i}", password=unusable) for i in range(missing)],
            batch_size=1000,
        )
        store = SessionStore()
        expire = timezone.now() + timedelta(days=1)
        rows, keys, datas = [], [], []
        for user in made:
            key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
            data = {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash(),
            }
            rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expire))
            keys.append(key)
            datas.append(data)
        Session.objects.bulk_create(rows, batch_size=1000)
        # And in the cache, where a log-in puts them too (SESSION_ENGINE cached_db): a
        # handshake reads its session from there.
        from django.conf import settings
        from django.contrib.sessions.backends.cached_db import KEY_PREFIX
        from django.core.cache import caches

        cache = caches[settings.SESSION_CACHE_ALIAS]
        age = int((expire - timezone.now()).total_seconds())
        for start in range(0, len(rows), 1000):
            batch = zip(keys[start : start + 1000], datas[start : start + 1000], strict=True)
            cache.set_many({KEY_PREFIX + key: data for key, data in batch}, age)
        self.users.extend(made)
        self.sessions.extend(keys)
        # For the bare reference app (bench.bare), which reads no database: who each session is.
        authors = {key: orjson.dumps({"id": u.pk, "username": u.username}) for key, u in zip(keys, made, strict=True)}
        publish_for_bare(SESSIONS_KEY, authors)


_room_counter = 0


def make_rooms(
    population: Population, *, rooms: int, members: int, tag: str, users: int | None = None, members_join: bool = True
) -> list[tuple[str, list[str]]]:
    """``rooms`` public rooms of ``members`` connections each, memberships made up front.

    Each room has ``users`` distinct users (default: one per member); with fewer,
    each user holds several connections (tabs) to the room. Returns (slug, [session
    key of each member]) per room. Rooms take consecutive slices of the population, grown
    to rooms x users first: nobody is a member of two of the rooms. (Before, the
    population was grown to one room's users and every room took the same ones: in 10
    rooms x 20 each user had ten sockets, each following the other nine rooms' activity,
    and in the storm's 100 rooms each of its 20 users was in every room.) With
    ``members_join=False`` only each room's creator is a member: the others' first subscribes
    join the rooms (the handshake section's cold run).
    """
    from rooms.models import Membership
    from rooms.services import room_create

    global _room_counter
    users = min(users or members, members)
    population.grow(rooms * users)
    made = []
    memberships = []
    offset = 0
    for _ in range(rooms):
        _room_counter += 1
        picks = [(offset + j) % len(population.users) for j in range(users)]
        offset = (offset + users) % len(population.users)
        creator = population.users[picks[0]]
        room = room_create(creator=creator, name=f"bench {tag} {_room_counter}", visibility="public")
        if members_join:
            memberships.extend(Membership(room=room, user=population.users[i]) for i in picks[1:])
        made.append((room.slug, [population.sessions[picks[j % users]] for j in range(members)]))
    Membership.objects.bulk_create(memberships, batch_size=1000, ignore_conflicts=True)
    publish_for_bare(ROOMS_KEY, room_ids([slug for slug, _ in made]))
    analyze()
    return made


def analyze() -> None:
    """Statistics of the tables the fixtures filled, as a deployment's autovacuum keeps them.

    Without, the planner sees tables of rows made a moment ago as nearly empty: its plan for a
    handshake's batched read (the users of 20 handshakes with their memberships) was a
    sequential scan of every membership, 15 ms a batch at 30,000 memberships instead of 0.27
    ms, and PostgreSQL took 0.4-0.8 of the benchmark machine's 2 cores while sockets connected.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session
    from django.db import connection

    from rooms.models import Membership, Room

    tables = [m._meta.db_table for m in (get_user_model(), Session, Room, Membership)]
    with connection.cursor() as cursor:  # PostgreSQL: the benchmark's database is (recreate_database)
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))


def publish_for_bare(key: str, mapping: dict) -> None:
    """Put what the bare reference app needs (it reads no database) into the benchmark's Redis."""
    from pubsub_site.redis.client import get_redis

    client = get_redis()
    items = list(mapping.items())
    for start in range(0, len(items), 1000):
        client.hset(key, mapping=dict(items[start : start + 1000]))


def room_ids(slugs: list[str]) -> dict[str, int]:
    from rooms.models import Room

    return dict(Room.objects.filter(slug__in=slugs).values_list("slug", "pk"))


def close_old_rooms(slugs: list[str]) -> None:
    """Take a finished section's members out of its rooms, so later connections do not follow them.

    The rooms and their messages stay: the worker may still be writing rows for them.
    """
    from rooms.models import Membership

    Membership.objects.filter(room__slug__in=slugs).delete()
