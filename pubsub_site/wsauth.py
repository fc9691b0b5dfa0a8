"""Who opens a WebSocket: session, user and memberships, read in one database hop.

Channels' AuthMiddlewareStack resolved the user in a hop to the process's one database
thread, and the consumer read the memberships in another; every socket's hops queue in
that one thread, so in a reconnect storm each hop added the wait for all the others.
Here one hop does it all (three queries; none without a session cookie), and on
PostgreSQL not even a hop: the session is read from the cache and the user with their
memberships in one query, both on the event loop (``ahandshake_identity``), and the
handshakes that wait at the same time read theirs together (one MGET for their
sessions, one query for their users: pubsub_site.coalesce).

A program opens the socket with an API token instead (``Authorization: Bearer psk_…``, no
cookie): its user and memberships are read with the token (api.tokens), and the token's
grant goes on the scope (``scope["grant"]``) for the consumer to apply its scopes and rooms.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.db import DEFAULT_DB_ALIAS, connection
from django.http.cookie import parse_cookie
from django.utils.crypto import constant_time_compare

from pubsub_site import async_db
from rooms.models import Membership, Room
from rooms.services import room_ids_for_user


@dataclass(frozen=True)
class HandshakeIdentity:
    session: SessionBase
    user: AbstractBaseUser | AnonymousUser
    # What rooms.services.room_ids_for_user returns: room id -> (slug, last read seq).
    memberships: dict[int, tuple[str, int]]


def _session_store(session_key: str | None) -> SessionBase:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _session_user(session: SessionBase) -> tuple[AbstractBaseUser | None, dict[int, tuple[str, int]]]:
    """The session's user, and their memberships. The user as django.contrib.auth.get_user
    finds it: the backend named in the session loads it (an inactive user is none), and the
    session's auth hash must match the user's, so a password change ends every session but
    the one that made it; a session that fails is flushed.

    One difference: a hash made with a key in SECRET_KEY_FALLBACKS is accepted as it is.
    get_user would cycle the session key, and a handshake cannot hand the browser the new
    cookie: its session would be gone. The next page load cycles it."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None, {}
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None, {}
    if backend_path == MODEL_BACKEND:
        user, memberships = _user_with_memberships(user_id)
    else:
        user = load_backend(backend_path).get_user(user_id)
        memberships = room_ids_for_user(user_id=user.pk) if user is not None else {}
    if user is None or _hash_verified(user, session.get(HASH_SESSION_KEY)):
        return user, memberships
    session.flush()
    return None, {}


def _hash_verified(user: AbstractBaseUser, session_hash: str | None) -> bool:
    """Whether the session's auth hash is the user's (current, or made with a fallback key)."""
    if not hasattr(user, "get_session_auth_hash"):
        return True
    return bool(session_hash) and (
        constant_time_compare(session_hash, user.get_session_auth_hash())
        or any(constant_time_compare(session_hash, old) for old in user.get_session_auth_fallback_hash())
    )


def handshake_identity(*, session_key: str | None) -> HandshakeIdentity:
    """The session the cookie names, its user, and the user's memberships (what the
    middleware runs in its one hop)."""
    session = _session_store(session_key)
    user, memberships = _session_user(session)
    if user is None:
        return HandshakeIdentity(session=session, user=AnonymousUser(), memberships={})
    return HandshakeIdentity(session=session, user=user, memberships=memberships)


async def ahandshake_identity(*, session_key: str) -> HandshakeIdentity:
    """What ``handshake_identity`` returns, read on the event loop: the session from the
    cache (pubsub_site.cache) and the user with their memberships in one query
    (pubsub_site.async_db). A session the cache no longer holds is read from PostgreSQL by
    Django, in its thread; a session signed in through another backend than ModelBackend,
    or a database other than PostgreSQL, takes ``handshake_identity``'s hop."""
    if not async_db.native():
        return await database_sync_to_async(handshake_identity)(session_key=session_key)
    session = _session_store(session_key)
    user_id, backend_path = await session.aget(SESSION_KEY), await session.aget(BACKEND_SESSION_KEY)
    if user_id is None or backend_path is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return HandshakeIdentity(session=session, user=AnonymousUser(), memberships={})
    if backend_path != MODEL_BACKEND:
        return await database_sync_to_async(handshake_identity)(session_key=session_key)
    sql, attnames = _user_with_memberships_sql(many=True)
    pk_at = attnames.index(get_user_model()._meta.pk.attname)
    rows = await async_db.fetchall_together(
        sql,
        get_user_model()._meta.pk.to_python(user_id),
        params=lambda user_ids: [user_ids],
        key_of=operator.itemgetter(pk_at),
    )
    user, memberships = _user_from_rows(rows, attnames)
    if user is None:
        return HandshakeIdentity(session=session, user=AnonymousUser(), memberships={})
    if not _hash_verified(user, await session.aget(HASH_SESSION_KEY)):
        await session.aflush()
        return HandshakeIdentity(session=session, user=AnonymousUser(), memberships={})
    return HandshakeIdentity(session=session, user=user, memberships=memberships)


MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@functools.cache
def _user_with_memberships_sql(*, many: bool = False) -> tuple[str, list[str]]:
    """The user's row LEFT JOINed with their memberships (not banned) and those rooms' slugs,
    written out once from the models' names: through the ORM, the user and the memberships
    were two queries costing 1.2 ms of CPU a handshake, ten times PostgreSQL's own work.
    ``many``: the rows of every user in an array (``= ANY(%s)``), for the handshakes that
    wait together (pubsub_site.async_db.fetchall_together)."""
    user_model = get_user_model()
    # What a handshake uses of the user: the key, the username, the password's hash (the
    # session's auth hash is made from it) and is_active; the rest stays deferred (their
    # timestamps alone cost a tenth of a handshake's CPU to parse).
    wanted = {user_model._meta.pk.name, user_model.USERNAME_FIELD, "password", "is_active"}
    user_fields = [f for f in user_model._meta.concrete_fields if f.name in wanted]
    m = {f.name: f.column for f in Membership._meta.concrete_fields}
    r = {f.name: f.column for f in Room._meta.concrete_fields}
    pk = user_model._meta.pk.column
    select = ", ".join(f'u."{f.column}"' for f in user_fields)
    sql = (
        f'SELECT {select}, m."{m["room"]}", r."{r["slug"]}", m."{m["last_read_seq"]}" '  # noqa: S608 (model names)
        f'FROM "{user_model._meta.db_table}" u '
        f'LEFT JOIN "{Membership._meta.db_table}" m ON m."{m["user"]}" = u."{pk}" AND NOT m."{m["banned"]}" '
        f'LEFT JOIN "{Room._meta.db_table}" r ON r."{r["id"]}" = m."{m["room"]}" '
        f'WHERE u."{pk}" {"= ANY(%s)" if many else "= %s"}'
    )
    return sql, [f.attname for f in user_fields]


def _user_with_memberships(user_id) -> tuple[AbstractBaseUser | None, dict[int, tuple[str, int]]]:
    """What ModelBackend.get_user and rooms.services.room_ids_for_user return, in one query."""
    sql, attnames = _user_with_memberships_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id])
        rows = cursor.fetchall()
    return _user_from_rows(rows, attnames)


def _user_from_rows(rows: list[tuple], attnames: list[str]) -> tuple[AbstractBaseUser | None, dict]:
    if not rows:
        return None, {}
    user = get_user_model().from_db(DEFAULT_DB_ALIAS, attnames, rows[0][: len(attnames)])
    if not ModelBackend().user_can_authenticate(user):
        return None, {}
    memberships = {row[-3]: (row[-2], row[-1]) for row in rows if row[-3] is not None}
    return user, memberships


def bearer_token(scope: dict) -> str | None:
    """The token of the handshake's ``Authorization: Bearer …`` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


async def token_identity(token: str):
    """The identity and grant of an API token's handshake (an unknown token: anonymous)."""
    from api.tokens import atoken_grant  # noqa: PLC0415 (the api app's models, loaded once apps are ready)

    grant = await atoken_grant(token)
    if grant is None:
        return HandshakeIdentity(session=_session_store(None), user=AnonymousUser(), memberships={}), None
    user = get_user_model()(pk=grant.user_id, **{get_user_model().USERNAME_FIELD: grant.username})
    memberships = await database_sync_to_async(room_ids_for_user)(user_id=grant.user_id)
    if grant.room_slugs is not None:
        memberships = {pk: held for pk, held in memberships.items() if held[0] in grant.room_slugs}
    return HandshakeIdentity(session=_session_store(None), user=user, memberships=memberships), grant


def session_cookie(scope: dict) -> str | None:
    """The session key from the handshake's Cookie header, as Channels' CookieMiddleware reads it."""
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME) or None
    return None


class WebSocketAuthMiddleware:
    """Puts scope["session"], scope["user"] and scope["memberships"] on a connection's scope
    (instead of Channels' AuthMiddlewareStack, which read the first two in a hop of their own).

    Nothing saves the session on a WebSocket (one that fails verification is flushed, as
    Django does). A handshake without a session cookie costs no hop: its user is anonymous,
    and the consumer refuses it (403).
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        session_key = session_cookie(scope)
        grant = None
        if session_key is not None:
            identity = await ahandshake_identity(session_key=session_key)
        elif (token := bearer_token(scope)) is not None:
            identity, grant = await token_identity(token)
        else:
            identity = HandshakeIdentity(session=_session_store(None), user=AnonymousUser(), memberships={})
        inner = self.inner(
            dict(scope, session=identity.session, user=identity.user, memberships=identity.memberships, grant=grant),
            receive,
            send,
        )
        del identity  # the inner application's scope holds them, for as long as it wants them
        return await inner
