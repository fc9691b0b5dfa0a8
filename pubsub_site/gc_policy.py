"""The cyclic garbage collector of a web process that holds thousands of sockets.

A full collection (generation 2) walks every object the collector tracks, and the process
does nothing else meanwhile: its event loop, and every socket on it, wait. A socket is about
75 tracked objects (its consumer, outbox, subscription, uvicorn's protocol and transport,
their coroutines, queues, events and lists), so at 15,000 sockets a process holds over a
million, and Python's own rule (a full collection whenever the objects that survived two
younger collections since the last one reach a quarter of those it kept) stopped a process
0.5-2 s at a time: ten times while its sockets connected, then every few minutes
(docs/benchmarks.md, 2026-12-06 evening). Every message of those seconds waited.

The guarantee kept here, in a web process (``install``, from ``pubsub_site.asgi``):

- **A full collection walks only what is new.** What survives one is frozen (``gc.freeze``:
  the collector's permanent generation, still freed by reference counting like any object),
  so the next walks only the objects made since. Its pause follows the rate at which the
  process makes long-lived objects, not how many sockets it holds.
- **Every ``GC_FULL_WALK_SECONDS`` one full walk of everything** (``gc.unfreeze`` then
  ``gc.collect``): a reference cycle that became garbage after it was frozen (a closed
  socket whose objects referred to each other) is freed within that time, so memory stays
  bounded. That walk is the one long pause left: at a random moment of the first interval,
  so that processes started together do not stop together, then once an interval. Its
  duration and what it freed are logged; every full collection's duration is the metric
  ``pubsub_gc_full_collection_seconds``.

``GC_FULL_WALK_SECONDS=0`` leaves the collector as Python sets it.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time

from django.conf import settings

from messaging import metrics

logger = logging.getLogger(__name__)

# Full collections longer than this are logged (a warning: the process stopped that long).
SLOW_SECONDS = 0.1

_started: list[float] = []
_installed = False


def install() -> None:
    """Freeze what was loaded so far, time full collections, and (unless
    GC_FULL_WALK_SECONDS is 0) freeze after each and walk everything once an interval."""
    global _installed
    gc.freeze()  # Django, the project and the libraries live as long as the process
    if _installed:
        return
    _installed = True
    gc.callbacks.append(_on_collection)
    interval = settings.GC_FULL_WALK_SECONDS
    if interval > 0:
        threading.Thread(target=_walk_forever, args=(interval,), name="gc full walks", daemon=True).start()


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
    if settings.GC_FULL_WALK_SECONDS > 0:
        gc.freeze()  # the survivors: the next full collection walks only what comes after
    if took > SLOW_SECONDS:
        logger.warning("a full garbage collection stopped the process %.0f ms", took * 1000)


def walk_everything() -> tuple[float, int]:
    """Give the frozen objects back to the collector and walk them all once (then freeze the
    survivors again, through ``_on_collection``). Returns (seconds, objects freed)."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    return time.perf_counter() - started, freed


def _walk_forever(interval: float) -> None:
    time.sleep(random.uniform(0.5, 1.0) * interval)
    while True:
        took, freed = walk_everything()
        logger.info("full walk of the garbage collector: %.0f ms, %d objects freed", took * 1000, freed)
        time.sleep(interval)
