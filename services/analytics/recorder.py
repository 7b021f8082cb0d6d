"""Event consumers of the analytics service: each batch of events is one transaction (``apply_batch_once``).

* order events: merge the batch into the orders' facts in memory and apply the summed change of
  their contributions to the counters, each counter written once per batch (no per-event write to
  the shared counter documents, which would serialise every consumer on them);
* ``stock_low`` / ``product_updated``: the product's latest known stock, last writer by event time;
* ``alert_sent``: alerts sent, by type.

After a commit the cached dashboard is invalidated.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from analytics.orderfacts import delta, merge, product_names
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, ProductUpdated, StockLow
from shopkit.messaging.bus import Delivery
from shopkit.mongo import apply_batch_once, count_retry

log = logging.getLogger("analytics.recorder")

ORDERS = "orders"
COUNTERS = "counters"
PRODUCTS = "products"
# A transaction that lost a race to create the same document is retried here (upserts of a new key).
DUPLICATE_RETRIES = 5

Invalidate = Callable[[], Awaitable[None]]


async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    await db[COUNTERS].create_index([("kind", ASCENDING), ("value", DESCENDING)])
    await db[PRODUCTS].create_index([("low", ASCENDING), ("stock", ASCENDING)])


def _meta(key: str, names: dict[str, str]) -> dict[str, Any]:
    kind, _, rest = key.partition(":")
    if kind == "revenue":
        day, _, currency = rest.partition(":")
        return {"kind": kind, "day": day, "currency": currency}
    if kind == "product":
        meta = {"kind": kind, "product_id": rest}
        if names.get(rest):
            meta["name"] = names[rest]
        return meta
    return {"kind": kind, "key": rest}


class Recorder:
    def __init__(self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], invalidate: Invalidate) -> None:
        self.client = client
        self.db = db
        self.invalidate = invalidate

    async def record(self, batch: Sequence[Delivery[Any]]) -> bool:
        """A batch of any of analytics' events, folded in memory and written in one transaction.

        Order events merge into the orders' facts; ``stock_low`` / ``product_updated`` into the
        products' latest state (last writer by event time); ``alert_sent`` into its counter. Each
        changed order, product and counter is written once, one bulk statement per collection.
        """
        if not batch:
            return False

        async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
            deliveries = [batch[i] for i in fresh]
            totals: Counter[str] = Counter()
            names: dict[str, str] = {}
            await self._fold_orders(session, [d for d in deliveries if isinstance(d.data, OrderCreated | OrderUpdated)],
                                    totals, names)
            await self._fold_products(session, [d for d in deliveries if isinstance(d.data, StockLow | ProductUpdated)])
            totals.update(f"alerts_sent:{d.data.type}" for d in deliveries if isinstance(d.data, AlertSent))
            ops = [UpdateOne({"_id": key}, {"$inc": {"value": amount}, "$set": _meta(key, names)}, upsert=True)
                   for key, amount in sorted(totals.items()) if amount]
            if ops:
                await self.db[COUNTERS].bulk_write(ops, ordered=False, session=session)

        for attempt in range(DUPLICATE_RETRIES):
            try:
                applied, _ = await apply_batch_once(self.client, self.db, [marker(d) for d in batch], effect)
                break
            except DuplicateKeyError:  # lost a race to create the same document (another replica)
                if attempt == DUPLICATE_RETRIES - 1:
                    raise  # redelivered by the broker
                count_retry(self.client, "duplicate-key")
        if any(applied):
            await self.invalidate()
        return any(applied)

    async def _fold_orders(self, session: AsyncClientSession, deliveries: list[Delivery[Any]],
                           totals: Counter[str], names: dict[str, str]) -> None:
        """Merge order events into the orders' facts; add the change of their contributions to ``totals``."""
        if not deliveries:
            return
        ids = list({d.data.order_id for d in deliveries})
        stored = {doc["_id"]: doc async for doc in self.db[ORDERS].find({"_id": {"$in": ids}}, session=session)}
        facts = dict(stored)
        for d in deliveries:
            old = facts.get(d.data.order_id)
            new = merge(old, d.data, d.event.time)
            new["_id"] = d.data.order_id
            totals.update(delta(old, new))
            names.update(product_names(new))
            facts[d.data.order_id] = new
        changed = [doc for oid, doc in facts.items() if doc != stored.get(oid)]
        if changed:
            await self.db[ORDERS].bulk_write([ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in changed],
                                             ordered=False, session=session)

    async def _fold_products(self, session: AsyncClientSession, deliveries: list[Delivery[Any]]) -> None:
        """Each product's latest state: last writer wins by event time, so a late older event changes nothing."""
        latest: dict[str, Delivery[Any]] = {}
        for d in deliveries:
            seen = latest.get(d.data.product_id)
            if seen is None or d.event.time > seen.event.time:
                latest[d.data.product_id] = d
        if not latest:
            return
        known = {doc["_id"] async for doc in self.db[PRODUCTS].find(
            {"_id": {"$in": list(latest)}}, {"_id": 1}, session=session)}
        ops = []
        for pid, d in latest.items():
            doc = {**product_fields(d.data), "as_of": d.event.time}
            if pid in known:
                ops.append(UpdateOne({"_id": pid, "as_of": {"$lt": d.event.time}}, {"$set": doc}))
            else:
                ops.append(UpdateOne({"_id": pid}, {"$set": doc}, upsert=True))
        await self.db[PRODUCTS].bulk_write(ops, ordered=False, session=session)


def marker(d: Delivery[Any]) -> str | None:
    """The handled-event marker an event needs: only ``alert_sent``, whose counter ``$inc`` is not idempotent.

    Order events merge into the order's stored facts, and merging an event twice changes nothing (so the
    counters get a zero delta); product events are last-writer-wins by event time, guarded by ``as_of``.
    Either, redelivered, changes nothing without a marker.
    """
    return d.marker if isinstance(d.data, AlertSent) else None


def product_fields(data: StockLow | ProductUpdated) -> dict[str, Any]:
    """What analytics keeps of a product from one of its events."""
    if isinstance(data, StockLow):
        out: dict[str, Any] = {"name": data.name, "stock": data.stock, "low": True}
        if data.low_stock_threshold is not None:
            out["low_stock_threshold"] = data.low_stock_threshold
        return out
    return {"name": data.name, "stock": data.stock, "low_stock_threshold": data.low_stock_threshold,
            "low": not data.deleted and data.stock <= data.low_stock_threshold, "deleted": data.deleted}
