"""The orders side of the saga: stock replies settle pending orders as confirmed or rejected.

Replies come in batches (``shopkit.messaging.bus``); a batch is one transaction holding the status
changes (one bulk statement, each update guarded by the status it was decided from) and their
``order_updated`` events (outbox, one statement). No handled-event marker is written: a
redelivered reply finds its order no longer pending and changes nothing. A
reply for an order that is no longer pending (cancelled meanwhile) changes nothing: the
products service releases or never takes the stock when it handles the cancellation,
whatever the arrival order.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from orders.service import OrderBook, order_updated_event
from orders.statuses import Actor, OrderStatus, can_transition
from shopkit.contracts.events import StockRejected, StockReserved
from shopkit.messaging.bus import Delivery, TransientFailure
from shopkit.messaging.outbox import add_to_outbox
from shopkit.metrics import ORDER_CONFIRM_SECONDS, ORDER_STATUS_CHANGES
from shopkit.mongo import apply_batch_once, parse_object_id, utcnow

log = logging.getLogger("orders.saga")

StockReply = StockReserved | StockRejected


def _seconds_since(created: Any, now: datetime) -> float | None:
    if not isinstance(created, datetime):
        return None
    return max((now - (created if created.tzinfo else created.replace(tzinfo=UTC))).total_seconds(), 0.0)


def target_of(reply: StockReply) -> OrderStatus:
    return OrderStatus.CONFIRMED if isinstance(reply, StockReserved) else OrderStatus.REJECTED


class StockChanged(TransientFailure):
    """A guarded status update matched fewer orders than decided (a concurrent change; the batch is retried)."""


class OrderSaga:
    def __init__(self, book: OrderBook) -> None:
        self.book = book

    async def settle(self, batch: Sequence[Delivery[StockReserved | StockRejected]]) -> dict[str, str]:
        """Handle a batch of ``stock_reserved`` and ``stock_rejected``; returns per order what happened."""
        outcome: dict[str, str] = {}
        settled: dict[str, float | None] = {}  # this attempt's changes: order → seconds from created to confirmed

        async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
            settled.clear()
            outcome.clear()
            replies: dict[Any, Delivery[Any]] = {}
            for i in fresh:
                oid = parse_object_id(batch[i].data.order_id)
                if oid is None:
                    log.warning("stock reply %s names an invalid order id %r; ignored", batch[i].id,
                                batch[i].data.order_id)
                    outcome[batch[i].data.order_id] = "ignored"
                    continue
                replies.setdefault(oid, batch[i])
            now = utcnow()
            # A read and a guarded update, not one ``findAndModify``: SecantusDB (the stand-in database) runs
            # ``findAndModify`` as a scan of the whole collection whatever its filter, a cost that grew with
            # every order stored (docs/saga.md, "Statements that scan").
            docs = {doc["_id"]: doc async for doc in self.book.orders.find({"_id": {"$in": list(replies)}},
                                                                            session=session)}
            updates, events = [], []
            for oid, delivery in replies.items():
                doc = docs.get(oid)
                if doc is None:
                    outcome[str(oid)] = "unknown order"
                    continue
                target = target_of(delivery.data)
                current = doc["status"]
                if not can_transition(current, target, Actor.SAGA):
                    outcome[str(oid)] = f"left {current}"
                    continue
                updates.append(UpdateOne({"_id": oid, "status": current},
                                         {"$set": {"status": target.value, "updated_at": now}}))
                doc.update(status=target.value, updated_at=now)
                reason = getattr(delivery.data, "reason", None)
                events.append(order_updated_event(doc, current, target.value, reason,
                                                  correlation_id=delivery.correlation_id,
                                                  traceparent=delivery.traceparent))
                outcome[str(oid)] = target.value
                settled[str(oid)] = _seconds_since(doc.get("created_at"), now)
            if updates:
                result = await self.book.orders.bulk_write(updates, ordered=True, session=session)
                if result.modified_count != len(updates):
                    raise StockChanged("an order changed under the batch")
                await add_to_outbox(self.book.db, events, session)

        # No handled-event marker: each change is the compare-and-set pending → confirmed|rejected, read and
        # written in this transaction, so a redelivered reply finds the order decided and changes nothing.
        await apply_batch_once(self.book.client, self.book.db, [None] * len(batch), effect)
        self.book.relay.notify()
        if settled:  # committed: count what the committed attempt changed
            for order_id, seconds in settled.items():
                ORDER_STATUS_CHANGES.labels(outcome[order_id]).inc()
                if seconds is not None and outcome[order_id] == OrderStatus.CONFIRMED.value:
                    ORDER_CONFIRM_SECONDS.observe(seconds)
        log.info("settled a batch of %d stock replies: %s", len(batch), dict(Counter(outcome.values()))
                 or "all duplicates")
        return outcome
