"""The cyclic garbage collector of a web process that holds thousands of sockets.

A full collection (generation 2) walks the objects of the oldest generation, and the process
does nothing else meanwhile: its event loop, and every socket on it, wait. A socket is about
75 tracked objects (its consumer, outbox, subscription, uvicorn's protocol and transport,
their coroutines, queues, events and lists), and an idle socket keeps making objects that
live long enough to reach the oldest generation: the next keepalive ping's timer, the
coroutines and futures each of its waits makes. So the oldest generation grows with the
sockets, and at 15,000 sockets a process Python's own rule (a full collection whenever the
objects promoted since the last one reach a quarter of those it kept) stopped a process 0.5-2
s at a time: ten times while its sockets connected, then every few minutes. Freezing what
survived each (so that the next walked only the newly promoted) still stopped it 0.1-1 s
every 20-35 s: most of what is promoted is those waits, alive, and each costs 1.5 µs to walk
(docs/benchmarks.md, 2026-12-06 evening). Every message of those moments waited. What full
collections find is little: 250-950 objects each.

The guarantee kept here, in a web process (``install``, from ``pubsub_site.asgi``):

- **No full collection of the collector's own.** The young generations are collected as
  Python does (they are small, and that is where garbage cycles mostly die); what reaches the
  oldest generation waits for the walk. Objects freed by reference counting (nearly all) are
  freed at once as always.
- **One full collection every ``GC_FULL_WALK_SECONDS``** (``gc.collect``): the cycles
  that reached the oldest generation and became garbage are freed within that time, so
  memory stays bounded. That walk is the one long pause left (as long as one of Python's
  own full collections: 0.5-2 s at 15,000 sockets): at a random moment of the first
  interval, so that processes started together do not stop together, then once an
  interval. Its duration and what it freed are logged; every full collection's duration is
  the metric ``pubsub_gc_full_collection_seconds``.

What Django, the project and the libraries made at import is frozen first (``gc.freeze``):
it lives as long as the process and no walk needs to look at it. ``GC_FULL_WALK_SECONDS=0``
leaves the collector as Python sets it.
"""

from __future__ import annotations

import atexit
import gc
import logging
import random
import threading
import time

from django.conf import settings

from messaging import metrics

logger = logging.getLogger(__name__)

# Full collections longer than this are logged as a warning (the process stopped that long).
SLOW_SECONDS = 0.1
# The oldest generation's threshold that no count of younger collections reaches.
NEVER = 2**31 - 1

_started: list[float] = []
_installed = False


def install() -> None:
    """Freeze what was loaded so far, time full collections, and (unless
    GC_FULL_WALK_SECONDS is 0) leave full collections to one walk an interval."""
    global _installed
    gc.freeze()
    if _installed:
        return
    _installed = True
    gc.callbacks.append(_on_collection)
    # The interpreter's last collections, as it exits, stop nothing that still serves, and the
    # log's streams may be closed by then.
    atexit.register(stop_timing)
    interval = settings.GC_FULL_WALK_SECONDS
    if interval > 0:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
        threading.Thread(target=_walk_forever, args=(interval,), name="gc full walks", daemon=True).start()


def stop_timing() -> None:
    """Time and log no more full collections (a process about to exit: pytest, once its
    tests are done, collects with its log's streams closed)."""
    if _on_collection in gc.callbacks:
        gc.callbacks.remove(_on_collection)


def _on_collection(phase: str, info: dict) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _started[:] = [time.perf_counter()]
        return
    if not _started:
        return
    took = time.perf_counter() - _started.pop()
    metrics.full_collection(took)
    if took > SLOW_SECONDS:
        logger.warning(
            "a full garbage collection stopped the process %.0f ms (%d objects freed)", took * 1000, info["collected"]
        )


def _walk_forever(interval: float) -> None:
    time.sleep(random.uniform(0.5, 1.0) * interval)
    while True:
        started = time.perf_counter()
        freed = gc.collect()
        took = (time.perf_counter() - started) * 1000
        logger.info("the garbage collector's full walk: %.0f ms, %d objects freed", took, freed)
        time.sleep(interval)
