"""Adaptive group commit (shopkit.batching): no linger when idle and sparse, grouping while a commit runs.

No assertion here depends on wall-clock speed: lingers are a minute long, so a batch that waited
for one would time the test out, and "flushed at once" is counted in event-loop turns. Arrival
density is fed through the batcher's clock, not by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shopkit.batching import Batcher

LONG = 60.0  # a linger no test may wait out


class Recorder:
    """A flush that records its batches; with ``hold`` set, each flush waits until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        return [i * 10 for i in items]


class Clock:
    """Arrival stamps ``step`` seconds apart."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def turns(n: int = 5) -> None:
    """Let the event loop run ``n`` rounds (no time passes for a linger)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_lone_item_is_flushed_at_once_with_no_linger() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, linger=LONG, clock=Clock(step=1000.0))
    submitted = asyncio.create_task(batcher.submit(7))
    await turns()
    assert flush.batches == [[7]]  # flushed within a few loop turns, not after the linger
    assert await asyncio.wait_for(submitted, 5) == 70


async def test_sparse_arrivals_are_each_flushed_at_once() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, linger=LONG, clock=Clock(step=1000.0))
    for i in range(4):
        assert await asyncio.wait_for(batcher.submit(i), 5) == i * 10
    assert flush.batches == [[0], [1], [2], [3]]
    assert not batcher.dense()


async def test_items_arriving_while_a_commit_is_in_flight_go_out_together_when_it_ends() -> None:
    flush = Recorder(hold=True)
    batcher: Batcher[int, int] = Batcher(flush, linger=LONG, max_size=4)
    first = asyncio.create_task(batcher.submit(0))
    await turns()
    assert flush.batches == [[0]]  # in flight, held
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(1, 10)]
    await turns()
    assert flush.batches == [[0]]  # nothing else is flushed while the commit runs
    flush.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert results == [i * 10 for i in range(10)]
    # Right after the commit, without a linger (one minute), in arrival order, max_size at most.
    assert flush.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]


async def test_a_batch_waiting_for_the_shared_lock_takes_everything_that_arrived_meanwhile() -> None:
    lock = asyncio.Lock()
    other = Recorder(hold=True)
    mine = Recorder()
    busy: Batcher[int, int] = Batcher(other, linger=LONG, lock=lock)
    batcher: Batcher[int, int] = Batcher(mine, linger=LONG, lock=lock, clock=Clock(step=1000.0))
    committing = asyncio.create_task(busy.submit(100))
    await turns()
    waiting = []
    for i in range(3):  # arrivals spread over several loop turns: the first one's worker is already waiting
        waiting.append(asyncio.create_task(batcher.submit(i)))
        await turns()
    assert mine.batches == []  # the other batcher's commit holds the lock
    other.release.set()
    assert await asyncio.wait_for(asyncio.gather(*waiting, committing), 5) == [0, 10, 20, 1000]
    assert mine.batches == [[0, 1, 2]]


async def test_dense_arrivals_linger_for_company_until_the_batch_is_full() -> None:
    flush = Recorder()
    # Arrivals 1 ms apart, a linger of a minute: dense, so the first item waits; max_size ends the wait.
    batcher: Batcher[int, int] = Batcher(flush, linger=LONG, max_size=3, clock=Clock(step=0.001))
    assert await asyncio.wait_for(batcher.submit(0), 5) == 0  # the first arrival: no gap known, so at once
    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(batcher.submit(10 + i)))
        await turns()  # the worker has started and decided before the next item arrives
        if i < 2:
            assert flush.batches[-1] == [0]  # lingering, nothing flushed
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [100, 110, 120]
    assert flush.batches == [[0], [10, 11, 12]]
    assert batcher.dense()


async def test_density_turns_around_within_a_few_arrivals() -> None:
    clock = Clock(step=0.001)
    batcher: Batcher[int, int] = Batcher(Recorder(), linger=0.02, clock=clock)
    for i in range(3):
        await batcher.submit(i)
    assert batcher.dense()
    clock.step = 3600.0  # a quiet hour counts as "sparse", not as an hour of silence to average away
    for i in range(4):
        await batcher.submit(i)
    assert not batcher.dense()
    clock.step = 0.001
    for i in range(4):
        await batcher.submit(i)
    assert batcher.dense()


async def test_no_linger_configured_means_never_dense() -> None:
    batcher: Batcher[int, int] = Batcher(Recorder(), linger=0, clock=Clock(step=0.0))
    for i in range(3):
        await batcher.submit(i)
    assert not batcher.dense()


async def test_a_hold_gathers_sparse_arrivals_into_one_batch() -> None:
    # Arrivals 1000 s apart by the batcher's clock (sparse: no linger), but a hold makes the first one wait.
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, linger=LONG, hold=LONG, max_size=3, clock=Clock(step=1000.0))
    first = asyncio.create_task(batcher.submit(1))
    await turns()
    assert flush.batches == [], "held, though arrivals are sparse"
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    await turns()
    assert flush.batches == [[1, 2, 3]]  # written once the batch is full, not after the hold
    assert await asyncio.wait_for(asyncio.gather(first, *rest), 5) == [10, 20, 30]


async def test_a_hold_ends_after_its_time_with_what_came() -> None:
    flush = Recorder()
    batcher: Batcher[int, int] = Batcher(flush, linger=0, hold=0.05, clock=Clock(step=1000.0))
    assert await asyncio.wait_for(asyncio.gather(batcher.submit(1), batcher.submit(2)), 5) == [10, 20]
    assert flush.batches == [[1, 2]]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(Recorder(), max_size=0)
    with pytest.raises(ValueError, match="siblings"):
        Batcher(Recorder(), siblings=0)
    with pytest.raises(ValueError, match="hold"):
        Batcher(Recorder(), hold=-1)
