"""Group commit: many concurrent callers, one commit.

Callers ``submit`` an item and wait for its result. The :class:`Batcher` collects items while a
batch is being written and for at most ``linger`` seconds after the first one arrives (so a
lone item under light load waits a few milliseconds, not a full batch), then hands up to
``max_size`` of them, in arrival order, to one call of ``flush``. One flush runs at a time:
while it commits, the next batch fills up; under load batches grow by themselves.

When a flush of several items raises, every item is flushed again on its own, so one bad item
(a poison event, a conflicting write) fails alone and its neighbours still commit. The result
of an item, or its exception, is delivered to its caller only.

Used by the event consumers (``shopkit.broker``: one transaction per batch of deliveries) and by
request handlers whose writes are cheaper together (orders' placement).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
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


class Batcher(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, max_size: int = 64, linger: float = 0.005,
                 lock: asyncio.Lock | None = None, name: str = "batch",
                 on_batch: Callable[[int], object] | None = None) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._flush = flush
        self.max_size = max_size
        self.linger = linger
        # Shared by the batchers of one service that write the same documents (one commit at a time).
        self._lock = lock or asyncio.Lock()
        self.name = name
        self.stats = BatchStats()
        self._on_batch = on_batch  # told each batch's size (a metric)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            # A context of its own: a batch serves many callers, none of whose context variables
            # (the correlation id of the first one, say) may leak into the others' work.
            self._worker = asyncio.create_task(self._run(), name=f"{self.name}-flusher",
                                               context=contextvars.Context())
        return await future

    async def _run(self) -> None:
        while self._pending:
            if len(self._pending) < self.max_size and self.linger > 0:
                # Linger for company, but never longer than ``linger`` after this batch's first item.
                deadline = asyncio.get_running_loop().time() + self.linger
                while len(self._pending) < self.max_size:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), remaining)
            batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size:]
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # a caller that gave up
            if batch:
                async with self._lock:
                    await self._write(batch)

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
