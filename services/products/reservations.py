"""The products side of the order saga: reserve every line of an order or none, release on cancel.

Each batch of events is one transaction holding the stock changes, the reservation records and the
replies (outbox). Orders are decided in arrival order against the running stock, as if handled one by
one, and stock is written with guarded ``$inc`` (never below zero). The reservation record (keyed by
order id) is the handled-event marker (a redelivery finds it and changes nothing), and it makes the
outcome independent of whether ``order_created`` or the cancel (or the orders service's own
``rejected``) arrives first: a late ``order_created`` takes nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from products.catalog import PRODUCTS, SOURCE, crossed_low_threshold, product_event, stock_low_event
from products.models import Reservation, ReservedLine
from shopkit.contracts.events import OrderCreated, OrderUpdated, StockRejected, StockReserved
from shopkit.contracts.events import ReservedLine as ReplyLine
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import Delivery, TransientFailure
from shopkit.messaging.outbox import add_to_outbox
from shopkit.metrics import STOCK_LOW
from shopkit.mongo import apply_batch_once, parse_object_id, utcnow

log = logging.getLogger("products.reservations")

RESERVATIONS = "reservations"

RESERVED = "reserved"
REJECTED = "rejected"
RELEASED = "released"
CANCELLED = "cancelled"
RELEASING_STATUSES = frozenset({CANCELLED, REJECTED})
"""The ``order_updated`` statuses products acts on (its queue is bound to these only)."""


class StockChanged(TransientFailure):
    """A guarded stock write matched fewer products than decided: something else changed the stock."""


@dataclass
class Outcome:
    """What a batch did: per order id the result, and the products whose stock changed (cache to invalidate)."""

    results: dict[str, str] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    stock_low: int = 0


def merge_lines(items: Iterable[Any]) -> list[tuple[str, int]]:
    """One entry per product (quantities added), in a stable order."""
    totals: Counter[str] = Counter()
    for line in items:
        totals[line.product_id] += line.quantity
    return sorted(totals.items())


def decide(orders: Sequence[tuple[str, list[tuple[str, int]]]], stock: dict[str, int]
           ) -> list[tuple[str, str, str | None]]:
    """Each order in turn against the running ``stock`` (updated in place): ``(order_id, result, short product)``.

    Pure: the whole batch's decisions, exactly as one-by-one handling would make them.
    """
    decisions: list[tuple[str, str, str | None]] = []
    for order_id, lines in orders:
        short = next((pid for pid, qty in lines if stock.get(pid, -1) < qty), None)
        if short is None:
            for pid, qty in lines:
                stock[pid] -= qty
            decisions.append((order_id, RESERVED, None))
        else:
            decisions.append((order_id, REJECTED, short))
    return decisions


def reservation_doc(order_id: str, status: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    """A reservations document, shaped by its model (``products.models.Reservation``)."""
    return Reservation(id=order_id, status=status,
                       lines=[ReservedLine(product_id=pid, quantity=qty) for pid, qty in lines]).model_dump_doc()


AfterCommit = Callable[[Iterable[str]], Awaitable[None]]


class StockReservations:
    def __init__(self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any],
                 after_commit: AfterCommit) -> None:
        self.client = client
        self.db = db
        self.products = db[PRODUCTS]
        self.reservations = db[RESERVATIONS]
        self.after_commit = after_commit

    # order_created -------------------------------------------------------------------------------

    async def reserve(self, batch: Sequence[Delivery[OrderCreated]]) -> Outcome:
        outcome = Outcome()
        # Optimistic, like the markers (``apply_batch_once``): an order almost never has a record yet, so the
        # first attempt does not read the records; inserting one that exists (a redelivery, a cancellation that
        # came first, another replica) aborts it with a duplicate key, and the retry reads them first.
        look_up = False

        async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
            nonlocal look_up
            outcome.results.clear()  # a retried transaction starts over
            outcome.stock_low = 0
            # One delivery per order (a duplicate order id in a batch is decided once).
            orders: dict[str, Delivery[OrderCreated]] = {}
            for i in fresh:
                orders.setdefault(batch[i].data.order_id, batch[i])
            decided = {doc["_id"] async for doc in self.reservations.find(
                {"_id": {"$in": list(orders)}}, {"_id": 1}, session=session)} if look_up else set()
            for order_id in decided:
                outcome.results[order_id] = "skipped"  # cancelled before it arrived, or already decided
            todo = [(oid, merge_lines(d.data.items)) for oid, d in orders.items() if oid not in decided]
            if not todo:
                return
            wanted = {pid for _, lines in todo for pid, _ in lines}
            oids = [oid for oid in (parse_object_id(pid) for pid in wanted) if oid is not None]
            docs = {str(doc["_id"]): doc async for doc in self.products.find({"_id": {"$in": oids}},
                                                                               session=session)}
            before = {pid: doc["stock"] for pid, doc in docs.items()}
            stock = dict(before)
            decisions = decide(todo, stock)

            taken = {pid: before[pid] - stock[pid] for pid in stock if stock[pid] != before[pid]}
            if taken:
                now = utcnow()
                result = await self.products.bulk_write(
                    [UpdateOne({"_id": docs[pid]["_id"], "stock": {"$gte": qty}},
                               {"$inc": {"stock": -qty}, "$set": {"updated_at": now}})
                     for pid, qty in sorted(taken.items())], ordered=True, session=session)
                if result.modified_count != len(taken):
                    raise StockChanged(f"stock of {sorted(taken)} changed under the batch")

            lines_of = dict(todo)
            events: list[CloudEvent] = []
            records = []
            for order_id, result_, short in decisions:
                delivery = orders[order_id]
                lines = lines_of[order_id]
                reply_lines = tuple(ReplyLine(product_id=pid, quantity=qty) for pid, qty in lines)
                records.append(reservation_doc(order_id, result_, lines))
                reply = (StockReserved(order_id=order_id, customer_id=delivery.data.customer_id, items=reply_lines)
                         if result_ == RESERVED else
                         StockRejected(order_id=order_id, customer_id=delivery.data.customer_id, items=reply_lines,
                                       product_id=short))
                events.append(new_event(reply, SOURCE, correlation_id=delivery.correlation_id,
                                        traceparent=delivery.traceparent))
                outcome.results[order_id] = result_
            try:
                await self.reservations.insert_many(records, ordered=False, session=session)
            except (BulkWriteError, DuplicateKeyError):
                look_up = True  # apply_batch_once retries a duplicate key once: that attempt reads the records
                raise
            # Every stock change is a product update (analytics keeps low-stock lists from them): one
            # per product per batch, with the stock after the batch.
            cause = batch[fresh[0]].correlation_id
            low = 0
            for pid in sorted(taken):
                doc = {**docs[pid], "stock": stock[pid]}
                events.append(product_event(doc, correlation_id=cause))
                if crossed_low_threshold(before[pid], stock[pid], doc["low_stock_threshold"]):
                    events.append(stock_low_event(doc, correlation_id=cause))
                    low += 1
            outcome.stock_low = low
            await add_to_outbox(self.db, events, session)
            outcome.touched.update(taken)

        # No handled-event marker: the reservation record is one. It is keyed by order id (unique) and written
        # in the transaction that decides the order, so a redelivered order_created aborts the first attempt
        # and the retry, reading the records (``decided``), skips it; two transactions deciding the same order
        # cannot both commit.
        await apply_batch_once(self.client, self.db, [None] * len(batch), effect)
        if outcome.stock_low:
            STOCK_LOW.inc(outcome.stock_low)
        # What this commit changed, and the products of orders decided before (redelivered): their effect was
        # committed before, but the cache and relay may not have heard of it (a crash right after that commit).
        redelivered = {pid for d in batch if outcome.results.get(d.data.order_id) == "skipped"
                       for pid, _ in merge_lines(d.data.items)}
        await self.after_commit(outcome.touched | redelivered)
        counts = Counter(outcome.results.values())
        log.info("reserved a batch of %d: %s", len(batch), dict(counts) or "all duplicates")
        return outcome

    # order_updated -------------------------------------------------------------------------------

    async def release(self, batch: Sequence[Delivery[OrderUpdated]]) -> Outcome:
        """On ``cancelled`` or ``rejected``: give the stock back exactly once (or forbid a later reservation)."""
        cancels = [d for d in batch if d.data.new_status in RELEASING_STATUSES]  # an event routed by its type only
        outcome = Outcome()
        if not cancels:
            return outcome  # other status changes are nothing to products (no marker needed)

        async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
            outcome.results.clear()
            outcome.touched.clear()
            orders: dict[str, Delivery[OrderUpdated]] = {}
            for i in fresh:
                orders.setdefault(cancels[i].data.order_id, cancels[i])
            existing = {doc["_id"]: doc async for doc in self.reservations.find(
                {"_id": {"$in": list(orders)}}, session=session)}
            now = utcnow()
            tombstones = [reservation_doc(oid, CANCELLED, []) for oid in orders if oid not in existing]
            if tombstones:
                await self.reservations.insert_many(tombstones, ordered=False, session=session)
            for doc in tombstones:
                outcome.results[doc["_id"]] = "tombstoned"
            releasing = [doc for oid, doc in existing.items() if doc["status"] == RESERVED]
            for oid, doc in existing.items():
                if doc["status"] != RESERVED:
                    outcome.results[oid] = f"nothing to release ({doc['status']})"
            if not releasing:
                return
            result = await self.reservations.update_many(
                {"_id": {"$in": [doc["_id"] for doc in releasing]}, "status": RESERVED},
                {"$set": {"status": RELEASED, "updated_at": now}}, session=session)
            if result.modified_count != len(releasing):
                raise StockChanged("a reservation changed under the batch")
            back: Counter[str] = Counter()
            for doc in releasing:
                for line in doc["lines"]:
                    back[line["product_id"]] += line["quantity"]
                outcome.results[doc["_id"]] = RELEASED
            ids = {pid: oid for pid in back if (oid := parse_object_id(pid)) is not None}
            if ids:
                await self.products.bulk_write(
                    [UpdateOne({"_id": ids[pid]}, {"$inc": {"stock": back[pid]}, "$set": {"updated_at": now}})
                     for pid in sorted(ids)], ordered=True, session=session)
            cause = cancels[fresh[0]].correlation_id
            events = [product_event(doc, correlation_id=cause) async for doc in self.products.find(
                {"_id": {"$in": list(ids.values())}}, session=session)]
            await add_to_outbox(self.db, events, session)
            outcome.touched.update(ids)

        # No marker: the reservation record is read first, and a release is the guarded reserved → released
        # update of that record, so a redelivered cancellation finds it released (or its tombstone) and
        # does nothing.
        await apply_batch_once(self.client, self.db, [None] * len(cancels), effect)
        await self.after_commit(outcome.touched)
        log.info("cancellations: %s", outcome.results or "all duplicates")
        return outcome
