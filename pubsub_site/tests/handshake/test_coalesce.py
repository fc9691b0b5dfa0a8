"""Reads that wait together are made as one (pubsub_site.coalesce), each caller answered as if alone."""

from __future__ import annotations

import asyncio

import pytest

from pubsub_site.coalesce import Coalescer, for_loop


class Reads:
    """A ``many`` that records each call's keys and answers ``key * 10``; it waits for
    ``release`` when ``hold`` is set (a read in flight), and fails for the keys in ``fail``."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail: set[int] = set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, keys: list[int]) -> list[int]:
        self.calls.append(list(keys))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            if self.fail & set(keys):
                raise ConnectionError(f"lost during {keys}")
            return [key * 10 for key in keys]
        finally:
            self.in_flight -= 1


async def test_a_read_alone_goes_at_once_with_only_its_key():
    reads = Reads()
    assert await Coalescer(reads).get(4) == 40
    assert reads.calls == [[4]]


async def test_reads_asked_while_one_is_in_flight_go_together_and_each_gets_its_own_answer():
    reads = Reads(hold=True)
    coalescer = Coalescer(reads)
    first = asyncio.ensure_future(coalescer.get(1))
    await asyncio.sleep(0)  # the first read is in flight
    rest = [asyncio.ensure_future(coalescer.get(key)) for key in (2, 3, 2)]
    await asyncio.sleep(0)
    assert reads.calls == [[1]]
    reads.release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 20]
    assert reads.calls == [[1], [2, 3, 2]]


async def test_reads_asked_in_the_same_turn_as_the_first_go_with_it():
    reads = Reads()
    coalescer = Coalescer(reads)
    assert await asyncio.gather(*(coalescer.get(key) for key in (5, 6, 7))) == [50, 60, 70]
    assert reads.calls == [[5, 6, 7]]


async def test_a_failed_batch_fails_its_own_callers_only():
    reads = Reads(hold=True)
    reads.fail = {1}
    coalescer = Coalescer(reads)
    doomed = asyncio.ensure_future(coalescer.get(1))
    await asyncio.sleep(0)
    later = asyncio.ensure_future(coalescer.get(2))
    await asyncio.sleep(0)
    reads.release.set()
    with pytest.raises(ConnectionError):
        await doomed
    assert await later == 20
    assert await coalescer.get(3) == 30  # and the coalescer goes on


async def test_a_caller_cancelled_while_it_waits_leaves_the_others_reads_alone():
    reads = Reads(hold=True)
    coalescer = Coalescer(reads)
    first = asyncio.ensure_future(coalescer.get(1))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(coalescer.get(2))
    stays = asyncio.ensure_future(coalescer.get(3))
    await asyncio.sleep(0)
    gone.cancel()
    reads.release.set()
    assert (await first, await stays) == (10, 30)
    assert gone.cancelled()
    assert reads.calls == [[1], [3]]  # a key nobody waits for any more is not read


async def test_answers_that_do_not_match_the_keys_are_an_error_not_a_wrong_answer():
    async def short(keys):
        return [0]

    coalescer = Coalescer(short)
    with pytest.raises(RuntimeError, match="2 keys read, 1 answers"):
        await asyncio.gather(coalescer.get(1), coalescer.get(2))


async def test_batches_are_bounded_in_size_and_in_how_many_are_in_flight():
    reads = Reads(hold=True)
    coalescer = Coalescer(reads, in_flight=2, batch_max=3)
    waiting = [asyncio.ensure_future(coalescer.get(key)) for key in range(8)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert reads.most_in_flight == 2
    reads.release.set()
    assert await asyncio.gather(*waiting) == [key * 10 for key in range(8)]
    assert max(len(call) for call in reads.calls) == 3
    assert sorted(key for call in reads.calls for key in call) == list(range(8))
    assert reads.most_in_flight == 2


async def test_each_loop_has_its_own_coalescer_by_name():
    made = []

    def make():
        made.append(Coalescer(Reads()))
        return made[-1]

    assert for_loop("test.reads", make) is for_loop("test.reads", make)
    assert len(made) == 1
    assert for_loop("test.other", make) is made[1]
