"""Group commit: many concurrent callers, one commit.

Callers ``submit`` an item and wait for its result; a :class:`Batcher` hands up to ``max_size`` items,
in arrival order, to one ``flush`` at a time. When to write is adaptive, like PostgreSQL's
``commit_delay``: alone at once when idle and sparse, together right after a commit in flight, and
after at most ``linger`` when arrivals are dense. A consumer off the latency path may ``hold`` its
first item so the several events of one order share a commit. A failing batch is flushed again item
by item, so one bad item fails alone. Used by the event consumers and by orders' placement.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shopkit.tasks import cancel

log = logging.getLogger("shopkit.batching")

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]
"""Writes a batch; returns one result per item, in the same order (or raises for the whole batch)."""


@dataclass
class BatchStats:
    """What a batcher did (tests and metrics read it)."""

    batches: int = 0
    items: int = 0
    fallbacks: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        self.batches += 1
        self.items += size
        self.largest = max(self.largest, size)
        if len(self.sizes) < 10_000:
            self.sizes.append(size)


GAP_WEIGHT = 0.25
"""Weight of the newest inter-arrival gap in the running mean (a few arrivals turn it around)."""


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, max_size: int = 64, linger: float = 0.005, siblings: float = 2.0,
                 hold: float = 0.0, lock: asyncio.Lock | None = None, name: str = "batch",
                 on_batch: Callable[[int], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if siblings <= 0:
            raise ValueError("siblings must be positive")
        if hold < 0:
            raise ValueError("hold must not be negative")
        self.hold = hold
        self._flush = flush
        self.max_size = max_size
        self.linger = linger
        self.siblings = siblings
        # Shared by the batchers of one service that write the same documents (one commit at a time).
        self._lock = lock or asyncio.Lock()
        self.name = name
        self.stats = BatchStats()
        self._on_batch = on_batch  # told each batch's size (a metric)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._clock = clock  # stamps arrivals (tests pass a controlled one)
        self._last_arrival: float | None = None
        self._gap: float | None = None  # running mean of the gaps between arrivals, seconds

    def dense(self) -> bool:
        """Whether arrivals come fast enough that waiting ``linger`` would gather ``siblings`` more items."""
        return self.linger > 0 and self._gap is not None and self._gap * self.siblings <= self.linger

    def _arrival(self) -> None:
        now = self._clock()
        if self._last_arrival is not None:
            # A long silence counts as "sparse", not as hours: capped at twice the dense threshold, so a
            # burst after a quiet spell is recognised within a few arrivals.
            gap = min(max(now - self._last_arrival, 0.0), 2 * self.linger / self.siblings)
            self._gap = gap if self._gap is None else self._gap + GAP_WEIGHT * (gap - self._gap)
        self._last_arrival = now

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._arrival()
        self._pending.append((item, future))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            # A context of its own: a batch serves many callers, none of whose context variables
            # (the correlation id of the first one, say) may leak into the others' work.
            self._worker = asyncio.create_task(self._run(), name=f"{self.name}-flusher",
                                               context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        # The worker runs while items are pending. Its first batch started it (nothing of this batcher
        # was committing): that one may linger, when arrivals are dense and no other batch holds the
        # lock. Every later batch gathered while a commit was in flight and goes out as soon as it ends.
        idle = True
        while self._pending:
            if idle and not self._lock.locked() and len(self._pending) < self.max_size:
                wait = max(self.hold, self.linger if self.dense() else 0.0)
                if wait > 0:
                    await self._linger(wait)
            idle = False
            async with self._lock:
                # Taken under the lock: what arrived while another batch held it joins this one.
                batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size:]
                batch = [(item, fut) for item, fut in batch if not fut.done()]  # a caller that gave up
                if batch:
                    await self._write(batch)

    async def _linger(self, seconds: float) -> None:
        """Wait for company: until ``max_size`` items are pending, at most ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while len(self._pending) < self.max_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.stats.record(len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            results = await self._flush([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            # Isolate the failure: every item on its own, so only the bad one fails.
            self.stats.fallbacks += 1
            log.warning("%s: a batch of %d failed (%s: %s); retrying its items one by one", self.name, len(batch),
                        type(exc).__name__, exc)
            for one in batch:
                await self._write([one])
            return
        if len(results) != len(batch):
            err = RuntimeError(f"{self.name}: flush returned {len(results)} results for {len(batch)} items")
            for _, fut in batch:
                _settle(fut, exc=err)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            _settle(fut, result=result)

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            await cancel(self._worker)


def _settle(fut: asyncio.Future[R], *, result: R | None = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)  # type: ignore[arg-type]
