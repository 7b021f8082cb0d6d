"""``GET /analytics/dashboard``: computed from the counters, served from a Redis cache.

The cache key carries a generation read *before* the counters are read; every committed
event bumps the generation *after* its commit. A reader that raced an event therefore stores
its result under a generation nobody asks for any more, and the first read after an event
always recomputes. The entry's TTL (``dashboard_max_staleness_seconds``) bounds the age of a
served dashboard even if a bump is lost. Without Redis the dashboard is computed every time.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis
from redis.exceptions import RedisError

from analytics.orderfacts import SAGA_CONFIRMED, SAGA_REJECTED, STATUSES
from analytics.recorder import COUNTERS, PRODUCTS

log = logging.getLogger("analytics.dashboard")

# The generation key outlives every entry keyed by it.
GENERATION_TTL_SECONDS = 7 * 86400
RATIO_DIGITS = 4


class RevenueDay(BaseModel):
    day: str
    currency: str
    amount: int


class TopProduct(BaseModel):
    product_id: str
    name: str
    quantity: int


class LowStockProduct(BaseModel):
    product_id: str
    name: str
    stock: int


class Dashboard(BaseModel):
    orders_by_status: dict[str, int]
    revenue_by_day: list[RevenueDay]
    top_products: list[TopProduct]
    low_stock: list[LowStockProduct]
    confirmed_ratio: float | None


def confirmed_ratio(confirmed: int, rejected: int) -> float | None:
    decided = confirmed + rejected
    return round(confirmed / decided, RATIO_DIGITS) if decided else None


async def compute(db: AsyncDatabase[Any], *, top_limit: int, revenue_days: int,
                  today: datetime | None = None) -> Dashboard:
    counters = db[COUNTERS]
    by_status = dict.fromkeys(STATUSES, 0)
    saga = {SAGA_CONFIRMED: 0, SAGA_REJECTED: 0}
    async for doc in counters.find({"kind": {"$in": ["status", "saga"]}}):
        target = by_status if doc["kind"] == "status" else saga
        target[doc["key"]] = int(doc["value"])
    first_day = ((today or datetime.now(UTC)) - timedelta(days=revenue_days - 1)).date().isoformat()
    revenue = [
        RevenueDay(day=d["day"], currency=d["currency"], amount=int(d["value"]))
        async for d in counters.find({"kind": "revenue", "day": {"$gte": first_day}, "value": {"$ne": 0}})
        .sort([("day", ASCENDING), ("currency", ASCENDING)])
    ]
    top = [
        TopProduct(product_id=d["product_id"], name=d.get("name", ""), quantity=int(d["value"]))
        async for d in counters.find({"kind": "product", "value": {"$gt": 0}})
        .sort([("value", DESCENDING), ("_id", ASCENDING)]).limit(top_limit)
    ]
    low = [
        LowStockProduct(product_id=str(d["_id"]), name=d.get("name", ""), stock=int(d["stock"]))
        async for d in db[PRODUCTS].find({"low": True}).sort([("stock", ASCENDING), ("_id", ASCENDING)])
    ]
    return Dashboard(orders_by_status=by_status, revenue_by_day=revenue, top_products=top, low_stock=low,
                     confirmed_ratio=confirmed_ratio(saga[SAGA_CONFIRMED], saga[SAGA_REJECTED]))


def _text(value: str | bytes | None) -> str:
    if value is None:
        return "0"
    return value.decode() if isinstance(value, bytes) else value


class DashboardCache:
    def __init__(self, redis: Redis, db: AsyncDatabase[Any], *, namespace: str, max_staleness_seconds: int,
                 top_limit: int, revenue_days: int) -> None:
        self.redis = redis
        self.db = db
        self.prefix = f"{namespace}analytics:dashboard:"
        self.ttl = max_staleness_seconds
        self.top_limit = top_limit
        self.revenue_days = revenue_days

    @property
    def generation_key(self) -> str:
        return f"{self.prefix}gen"

    async def _compute(self) -> Dashboard:
        return await compute(self.db, top_limit=self.top_limit, revenue_days=self.revenue_days)

    async def get(self) -> Dashboard:
        try:
            gen = _text(await self.redis.get(self.generation_key))
            key = f"{self.prefix}g{gen}"
            raw = await self.redis.get(key)
        except RedisError as exc:
            log.warning("dashboard cache unavailable (%s); computing from MongoDB", exc)
            return await self._compute()
        if raw is not None:
            return Dashboard.model_validate(json.loads(raw))
        dashboard = await self._compute()
        try:
            await self.redis.set(key, dashboard.model_dump_json(), ex=self.ttl)
        except RedisError as exc:
            log.warning("could not fill the dashboard cache: %s", exc)
        return dashboard

    async def invalidate(self) -> None:
        """After a commit. A failure is logged, not raised: the TTL bounds how stale the dashboard gets."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(self.generation_key)
                pipe.expire(self.generation_key, GENERATION_TTL_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            log.warning("could not invalidate the dashboard cache (%s); it may be up to %ss old", exc, self.ttl)
