"""The revision of a room's details: its name, topic, archive state and members.

Every change to them that the room's subscribers are told of (``member_updated``,
``member_left``, ``room_updated``: protocol.events) first raises the room's details
revision in Redis, and the frames carry the new value as ``"details"``. ``subscribed``
carries the value read once the socket is in the room's group (messaging.realtime.presence's
join), and the room page is rendered with the value read before its members
(rooms.views). So a page whose value is not its subscription's missed a change, told while
it had no socket in the group (it was offline, or rendered before its socket subscribed),
and reads the room's details again (``rooms.details_views.room_details``). The frames that
come while it reads are applied again on what it read when their value is above its value.

The guarantee: no change committed before a subscription started is missing from a page
that has seen that subscription's ``subscribed``. The value is never a count the client may
do arithmetic on: the page compares it for equality, and orders only the frames that came
during one read. A Redis that lost the key (a failover
before it replicated, a flush) starts again from 0; a page then sees a different value and
reads the details again.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from pubsub_site.redis.client import get_async_redis, get_redis


def details_key(room_id: int) -> str:
    """The room's details revision (on the room's server, with its other keys:
    messaging.store.keys)."""
    return f"pubsub:room:{{{room_id}}}:details"


def details_raise(room_id: int) -> int:
    """Raise the room's details revision for a change about to be told; returns the new value."""
    return int(get_redis(room_id).incr(details_key(room_id)))


async def adetails_raise(room_id: int) -> int:
    return int(await get_async_redis(room_id).incr(details_key(room_id)))


def details_read(room_id: int) -> int | None:
    """The room's details revision now (0 before any change), or None when Redis cannot be
    read: the page then reads the details again once its socket has subscribed."""
    try:
        return int(get_redis(room_id).get(details_key(room_id)) or 0)
    except (RedisError, OSError):
        return None
