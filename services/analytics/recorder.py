"""Event consumers of the analytics service: each event is one transaction (``handle_once``).

* order events: merge the order's facts and apply the change of its contribution to the counters;
* ``stock_low`` / ``product_updated``: the product's latest known stock, last writer by event time;
* ``alert_sent``: alerts sent, by type.

After a commit the cached dashboard is invalidated.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorDatabase
from pydantic import Field
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from analytics.orderfacts import OrderEventData, delta, merge, product_names
from shopkit.events import CloudEvent, EventPayload
from shopkit.mongo import handle_once

log = logging.getLogger("analytics.recorder")

ORDERS = "orders"
COUNTERS = "counters"
PRODUCTS = "products"
# A transaction that lost a race to create the same document is retried here (upserts of a new key).
DUPLICATE_RETRIES = 5

Invalidate = Callable[[], Awaitable[None]]


class StockLowData(EventPayload):
    product_id: str = Field(min_length=1)
    name: str = ""
    stock: int
    low_stock_threshold: int | None = None


class ProductUpdatedData(EventPayload):
    product_id: str = Field(min_length=1)
    name: str = ""
    stock: int
    low_stock_threshold: int
    deleted: bool = False


class AlertSentData(EventPayload):
    type: str = Field(min_length=1)


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

    async def _once(self, consumer: str, event: CloudEvent,
                    effect: Callable[[AsyncIOMotorClientSession], Awaitable[Any]]) -> bool:
        for attempt in range(DUPLICATE_RETRIES):
            try:
                applied, _ = await handle_once(self.client, self.db, consumer, event.id, effect)
                break
            except DuplicateKeyError:
                if attempt == DUPLICATE_RETRIES - 1:
                    raise  # redelivered by the broker
        if applied:
            await self.invalidate()
        return applied

    async def _bump(self, counts: dict[str, int], names: dict[str, str], session: AsyncIOMotorClientSession) -> None:
        for key, amount in counts.items():
            await self.db[COUNTERS].update_one(
                {"_id": key}, {"$inc": {"value": amount}, "$set": _meta(key, names)}, upsert=True, session=session)

    async def on_order_event(self, event: CloudEvent) -> bool:
        data = OrderEventData.model_validate(event.data)

        async def effect(session: AsyncIOMotorClientSession) -> None:
            old = await self.db[ORDERS].find_one({"_id": data.order_id}, session=session)
            new = merge(old, data, event.time)
            changes = delta(old, new)
            if new != old:
                await self.db[ORDERS].replace_one({"_id": data.order_id}, new, upsert=True, session=session)
            await self._bump(changes, product_names(new), session)

        return await self._once(f"analytics.{event.type}", event, effect)

    async def _product_state(self, event: CloudEvent, product_id: str, fields: dict[str, Any]) -> None:
        """Last writer wins by event time, so a late older event never overwrites a newer stock."""

        async def effect(session: AsyncIOMotorClientSession) -> None:
            at: datetime = event.time
            doc = {**fields, "as_of": at}
            result = await self.db[PRODUCTS].update_one(
                {"_id": product_id, "as_of": {"$lt": at}}, {"$set": doc}, session=session)
            if result.matched_count == 0 and await self.db[PRODUCTS].find_one(
                    {"_id": product_id}, {"_id": 1}, session=session) is None:
                await self.db[PRODUCTS].insert_one({"_id": product_id, **doc}, session=session)

        await self._once(f"analytics.{event.type}", event, effect)

    async def on_stock_low(self, event: CloudEvent) -> None:
        data = StockLowData.model_validate(event.data)
        fields: dict[str, Any] = {"name": data.name, "stock": data.stock, "low": True}
        if data.low_stock_threshold is not None:
            fields["low_stock_threshold"] = data.low_stock_threshold
        await self._product_state(event, data.product_id, fields)

    async def on_product_updated(self, event: CloudEvent) -> None:
        data = ProductUpdatedData.model_validate(event.data)
        await self._product_state(event, data.product_id, {
            "name": data.name, "stock": data.stock, "low_stock_threshold": data.low_stock_threshold,
            "low": not data.deleted and data.stock <= data.low_stock_threshold, "deleted": data.deleted,
        })

    async def on_alert_sent(self, event: CloudEvent) -> None:
        data = AlertSentData.model_validate(event.data)

        async def effect(session: AsyncIOMotorClientSession) -> None:
            await self._bump({f"alerts_sent:{data.type}": 1}, {}, session)

        await self._once(f"analytics.{event.type}", event, effect)
