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

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from analytics.orderfacts import delta, merge, product_names
from shopkit.broker import Delivery
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, ProductUpdated, StockLow
from shopkit.mongo import apply_batch_once

log = logging.getLogger("analytics.recorder")

ORDERS = "orders"
COUNTERS = "counters"
PRODUCTS = "products"
# A transaction that lost a race to create the same document is retried here (upserts of a new key).
DUPLICATE_RETRIES = 5

Invalidate = Callable[[], Awaitable[None]]


async def ensure_indexes(db: AsyncIOMotorDatabase[Any]) -> None:
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
    def __init__(self, client: AsyncIOMotorClient[Any], db: AsyncIOMotorDatabase[Any], invalidate: Invalidate) -> None:
        self.client = client
        self.db = db
        self.invalidate = invalidate

    async def _once(self, consumer: str, batch: Sequence[Delivery[Any]],
                    effect: Callable[[AsyncIOMotorClientSession, list[int]], Awaitable[Any]]) -> bool:
        """The batch's effect and markers in one transaction; the dashboard cache is invalidated after it."""
        for attempt in range(DUPLICATE_RETRIES):
            try:
                applied, _ = await apply_batch_once(self.client, self.db, consumer, [d.id for d in batch], effect)
                break
            except DuplicateKeyError:
                if attempt == DUPLICATE_RETRIES - 1:
                    raise  # redelivered by the broker
        if any(applied):
            await self.invalidate()
        return any(applied)

    async def _bump(self, counts: dict[str, int], names: dict[str, str], session: AsyncIOMotorClientSession) -> None:
        """Every counter of the batch written once: one ``$inc`` per key, one bulk statement."""
        ops = [UpdateOne({"_id": key}, {"$inc": {"value": amount}, "$set": _meta(key, names)}, upsert=True)
               for key, amount in sorted(counts.items()) if amount]
        if ops:
            await self.db[COUNTERS].bulk_write(ops, ordered=False, session=session)

    async def on_order_events(self, batch: Sequence[Delivery[OrderCreated]] | Sequence[Delivery[OrderUpdated]]
                              ) -> bool:
        """Fold the batch into the orders' facts in memory, then write each changed order and counter once."""
        if not batch:
            return False

        async def effect(session: AsyncIOMotorClientSession, fresh: list[int]) -> None:
            ids = list({batch[i].data.order_id for i in fresh})
            stored = {doc["_id"]: doc async for doc in self.db[ORDERS].find({"_id": {"$in": ids}}, session=session)}
            facts = dict(stored)
            totals: Counter[str] = Counter()
            names: dict[str, str] = {}
            for i in fresh:
                d = batch[i]
                old = facts.get(d.data.order_id)
                new = merge(old, d.data, d.event.time)
                new["_id"] = d.data.order_id
                totals.update(delta(old, new))
                names.update(product_names(new))
                facts[d.data.order_id] = new
            changed = [doc for oid, doc in facts.items() if doc != stored.get(oid)]
            if changed:
                await self.db[ORDERS].bulk_write([ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)
                                                  for doc in changed], ordered=False, session=session)
            await self._bump(dict(totals), names, session)

        return await self._once(f"analytics.{batch[0].event.type}", batch, effect)

    async def _product_states(self, consumer: str, batch: Sequence[Delivery[Any]],
                              fields_of: Callable[[Any], dict[str, Any]]) -> None:
        """Last writer wins by event time, so a late older event never overwrites a newer stock."""

        async def effect(session: AsyncIOMotorClientSession, fresh: list[int]) -> None:
            latest: dict[str, Delivery[Any]] = {}
            for i in fresh:
                d = batch[i]
                seen = latest.get(d.data.product_id)
                if seen is None or d.event.time > seen.event.time:
                    latest[d.data.product_id] = d
            known = {doc["_id"] async for doc in self.db[PRODUCTS].find(
                {"_id": {"$in": list(latest)}}, {"_id": 1}, session=session)}
            ops = []
            for pid, d in latest.items():
                doc = {**fields_of(d.data), "as_of": d.event.time}
                if pid in known:
                    ops.append(UpdateOne({"_id": pid, "as_of": {"$lt": d.event.time}}, {"$set": doc}))
                else:
                    ops.append(UpdateOne({"_id": pid}, {"$set": doc}, upsert=True))
            await self.db[PRODUCTS].bulk_write(ops, ordered=False, session=session)

        await self._once(consumer, batch, effect)

    async def on_stock_low(self, batch: Sequence[Delivery[StockLow]]) -> None:
        def fields(data: StockLow) -> dict[str, Any]:
            out: dict[str, Any] = {"name": data.name, "stock": data.stock, "low": True}
            if data.low_stock_threshold is not None:
                out["low_stock_threshold"] = data.low_stock_threshold
            return out

        await self._product_states("analytics.stock_low", batch, fields)

    async def on_product_updated(self, batch: Sequence[Delivery[ProductUpdated]]) -> None:
        def fields(data: ProductUpdated) -> dict[str, Any]:
            return {"name": data.name, "stock": data.stock, "low_stock_threshold": data.low_stock_threshold,
                    "low": not data.deleted and data.stock <= data.low_stock_threshold, "deleted": data.deleted}

        await self._product_states("analytics.product_updated", batch, fields)

    async def on_alert_sent(self, batch: Sequence[Delivery[AlertSent]]) -> None:
        async def effect(session: AsyncIOMotorClientSession, fresh: list[int]) -> None:
            await self._bump(Counter(f"alerts_sent:{batch[i].data.type}" for i in fresh), {}, session)

        await self._once("analytics.alert_sent", batch, effect)
