"""Whether a user has an open socket anywhere, as Redis holds it: the key and its read.

The web processes write the entries (``messaging.realtime.online``, one per process and
user, scored by when it expires); the worker reads them here, synchronously, before it
e-mails a digest of missed mentions (``messaging.notifications.digests``). The sets live on
the first room server (``get_redis(None)``).
"""

from __future__ import annotations

import time

from pubsub_site.redis.client import get_redis


def online_key(user_id: int) -> str:
    return f"pubsub:online:{user_id}"


def users_online(*, user_ids: list[int]) -> set[int]:
    """Of ``user_ids``, those with an open socket in some process (synchronous: for jobs)."""
    if not user_ids:
        return set()
    now = time.time()
    pipe = get_redis(None).pipeline(transaction=False)
    for user_id in user_ids:
        pipe.zcount(online_key(user_id), f"({now}", "+inf")
    return {user_id for user_id, count in zip(user_ids, pipe.execute(), strict=True) if count}
