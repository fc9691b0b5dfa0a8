"""Reads of one kind that wait together are made as one: one query, one round trip, for all.

A thousand handshakes at once each read their session (a Redis GET), their user (a
query) and, at their subscribe, the room's access (a query). Made one by one, each read
pays the client library's whole round-trip machinery (redis-py's and psycopg's per-call
work cost more web CPU than the server's answer). A ``Coalescer`` sends the first read at
once; reads asked while one is in flight wait for it and then go together, as one
``many`` call (a Redis MGET, a query with ``= ANY(%s)``). With no load nothing waits (a
read alone goes at once, as before); under load the batches grow with the queue, as a
database's group commit does.

Guarantees: each caller gets the answer its own key would have got alone (``many`` returns
one answer per key, in order), or the error the batch's call raised (every caller of a
batch that failed hears it; a caller never hears another batch's error). A caller
cancelled while it waits leaves the others' reads alone. At most ``in_flight`` batches of
one coalescer are in flight at once, and at most ``batch_max`` keys in one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """Reads of one event loop, batched while earlier ones are in flight."""

    def __init__(
        self,
        many: Callable[[list[K]], Awaitable[Sequence[V]]],
        *,
        in_flight: int = 1,
        batch_max: int = 256,
    ) -> None:
        self.many = many
        self.in_flight_max = in_flight
        self.batch_max = batch_max
        self.in_flight = 0
        self.waiting: list[tuple[K, asyncio.Future]] = []
        self.tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    async def get(self, key: K) -> V:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((key, future))
        if self.in_flight < self.in_flight_max:
            self._start()
        return await future

    def _start(self) -> None:
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self) -> None:
        # The batch is taken when the task first runs: reads asked in the same turn of the
        # loop as the one that started it go with it.
        batch = [(key, future) for key, future in self.waiting[: self.batch_max] if not future.done()]
        del self.waiting[: self.batch_max]
        try:
            if batch:
                answers = await self.many([key for key, _ in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(batch)} keys read, {len(answers)} answers")
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    if isinstance(error, Exception):
                        future.set_exception(error)
                    else:
                        future.cancel()
            if not isinstance(error, Exception):
                raise
        finally:
            self.in_flight -= 1
            if self.waiting and self.in_flight < self.in_flight_max:
                self._start()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Coalescer]] = weakref.WeakKeyDictionary()


def for_loop(name: Hashable, make: Callable[[], Coalescer[K, V]]) -> Coalescer[K, V]:
    """The running loop's coalescer called ``name``, made by ``make`` at its first use (a
    batch's connections belong to one loop; the test suite makes a loop per test)."""
    table = _by_loop.setdefault(asyncio.get_running_loop(), {})
    coalescer = table.get(name)
    if coalescer is None:
        coalescer = table[name] = make()
    return coalescer
