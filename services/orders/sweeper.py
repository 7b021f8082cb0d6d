"""Nothing stays pending forever: orders with no stock reply within a bound are rejected (reason ``timeout``).

A reply lost for good (a dead letter discarded, a queue purged) would otherwise leave the customer
waiting. Every ``order_sweep_seconds`` the orders pending longer than ``order_pending_timeout_seconds``
get a guarded ``pending → rejected`` transition and their ``order_updated`` event in one transaction,
as a ``stock_rejected`` reply would; products releases what it reserved. The guard lets concurrent
sweepers on several replicas run safely.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from orders.service import IllegalTransition, OrderBook, Transition
from orders.statuses import Actor, OrderStatus
from shopkit.mongo import in_transaction, utcnow
from shopkit.tasks import cancel

log = logging.getLogger("orders.sweeper")

BY_STATUS_CREATED = [("status", ASCENDING), ("created_at", ASCENDING)]
TIMEOUT_REASON = "timeout"


class PendingSweeper:
    def __init__(self, book: OrderBook, *, timeout_seconds: float, every_seconds: float, batch: int = 100) -> None:
        self.book = book
        self.timeout = timedelta(seconds=timeout_seconds)
        self.every = every_seconds
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> list[str]:
        """Reject the orders pending for longer than the timeout; returns their ids."""
        cutoff = utcnow() - self.timeout
        stale = [doc["_id"] async for doc in self.book.orders.find(
            {"status": OrderStatus.PENDING.value, "created_at": {"$lt": cutoff}}, {"_id": 1},
        ).sort("created_at", ASCENDING).limit(self.batch)]
        rejected: list[str] = []
        for oid in stale:

            async def work(session: AsyncClientSession, oid: Any = oid) -> Transition:
                return await self.book.transition_in(session, oid, OrderStatus.REJECTED, Actor.SAGA,
                                                     reason=TIMEOUT_REASON)

            try:
                await in_transaction(self.book.client, work)
            except IllegalTransition:
                continue  # settled meanwhile (a reply, a cancel, another replica's sweep)
            rejected.append(str(oid))
        if rejected:
            self.book.relay.notify()
            log.warning("rejected %d order(s) pending for more than %s: %s", len(rejected), self.timeout,
                        ", ".join(rejected))
        return rejected

    async def run(self) -> None:
        while True:
            try:
                while len(await self.sweep_once()) == self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pending-order sweep failed (%s: %s); next one in %.0fs", type(exc).__name__, exc,
                            self.every)
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="orders-pending-sweeper")

    async def stop(self) -> None:
        await cancel(self._task)
