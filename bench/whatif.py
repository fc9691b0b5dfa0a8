"""What-if ASGI entry points: the project's application with one suggested change applied in memory.

The benchmark runs them beside the real thing to size a change before anyone makes
it in the project's code; nothing here is used outside the benchmark.

``fastdispatch``: Channels 4.2+ ``AsyncConsumer.dispatch`` awaits
``aclose_old_connections()`` (a ``sync_to_async`` hop to the one thread-sensitive
executor thread) before *every* handler: every frame a client sends and every
channel-layer event, i.e. once per delivered copy of every message. The
consumer reaches the database only through ``database_sync_to_async``, which
closes stale connections around each call itself, so the hop buys nothing on the
message path. This variant keeps it for connect/disconnect only.
"""

from __future__ import annotations

# isort: off
from pubsub_site.asgi import application  # noqa: F401 (first: it sets Django up; the app served)
from channels.consumer import get_handler_name
from messaging.consumers import RoomsConsumer

# isort: on

_original_dispatch = RoomsConsumer.dispatch
_KEEP = {"websocket.connect", "websocket.disconnect"}


async def _dispatch(self, message: dict) -> None:
    if message["type"] in _KEEP:
        await _original_dispatch(self, message)
        return
    handler = getattr(self, get_handler_name(message), None)
    if handler is None:
        raise ValueError(f"No handler for message type {message['type']}")
    await handler(message)


RoomsConsumer.dispatch = _dispatch
