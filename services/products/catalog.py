"""Catalog reads and admin writes. Every write commits its ``product_updated`` event in the same
transaction (outbox), then invalidates the cache, then wakes the relay."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.exceptions import RedisError

from products.cache import ProductCache
from products.models import Product
from products.schemas import ProductOut, ProductPage, SortKey
from shopkit.contracts.events import ProductUpdated, StockLow
from shopkit.contracts.products import CreateProductRequest, UpdateProductRequest
from shopkit.errors import ProblemError
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.outbox import OutboxRelay, add_to_outbox
from shopkit.metrics import STOCK_LOW
from shopkit.mongo import in_transaction, parse_object_id, utcnow

log = logging.getLogger("products.catalog")

SOURCE = "/microshop/products"
PRODUCTS = "products"

SORTS: dict[str, list[tuple[str, int]]] = {
    "name": [("name", ASCENDING), ("_id", ASCENDING)],
    "-name": [("name", DESCENDING), ("_id", DESCENDING)],
    "price": [("price", ASCENDING), ("_id", ASCENDING)],
    "-price": [("price", DESCENDING), ("_id", DESCENDING)],
    "stock": [("stock", ASCENDING), ("_id", ASCENDING)],
    "-stock": [("stock", DESCENDING), ("_id", DESCENDING)],
    "newest": [("created_at", DESCENDING), ("_id", DESCENDING)],
    "oldest": [("created_at", ASCENDING), ("_id", ASCENDING)],
}






def not_found(product_id: str) -> ProblemError:
    return ProblemError(404, f"product {product_id} does not exist", type_="product-not-found")


def product_event(doc: dict[str, Any], *, deleted: bool = False, correlation_id: str | None = None) -> CloudEvent:
    out = ProductOut.from_doc(doc)
    data = ProductUpdated(product_id=out.id, deleted=deleted, **out.model_dump())
    return new_event(data, SOURCE, correlation_id=correlation_id)


def stock_low_event(doc: dict[str, Any], *, correlation_id: str | None = None) -> CloudEvent:
    data = StockLow(product_id=str(doc["_id"]), sku=doc["sku"], name=doc["name"], stock=doc["stock"],
                    low_stock_threshold=doc["low_stock_threshold"])
    return new_event(data, SOURCE, correlation_id=correlation_id)


def crossed_low_threshold(stock_before: int, stock_after: int, threshold: int) -> bool:
    """True when a decrement takes the stock from above the threshold to at or below it."""
    return stock_after <= threshold < stock_before


@dataclass
class ListQuery:
    q: str | None = None
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    sort: SortKey = "name"
    limit: int = 20
    offset: int = 0

    def filter(self) -> dict[str, Any]:
        f: dict[str, Any] = {}
        if self.q:
            f["name"] = {"$regex": re.escape(self.q), "$options": "i"}
        if self.category:
            f["category"] = self.category
        price: dict[str, int] = {}
        if self.min_price is not None:
            price["$gte"] = self.min_price
        if self.max_price is not None:
            price["$lte"] = self.max_price
        if price:
            f["price"] = price
        if self.in_stock is True:
            f["stock"] = {"$gt": 0}
        elif self.in_stock is False:
            f["stock"] = 0
        return f


class Catalog:
    def __init__(self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], cache: ProductCache,
                 relay: OutboxRelay) -> None:
        self.client = client
        self.db = db
        self.products = db[PRODUCTS]
        self.cache = cache
        self.relay = relay

    async def after_commit(self, product_ids: Iterable[str]) -> None:
        """Invalidate the cache for what was just written, then let the relay publish."""
        ids = list(product_ids)
        for attempt in range(3):
            try:
                await self.cache.invalidate(ids)
                break
            except RedisError as exc:
                if attempt == 2:
                    log.error("could not invalidate the product cache for %s (%s): reads may be stale for up "
                              "to the cache TTL", ids, exc)
                else:
                    await asyncio.sleep(0.05 * (attempt + 1))
        self.relay.notify()

    # Reads ---------------------------------------------------------------------------------------

    async def get(self, product_id: str) -> ProductOut:
        oid = parse_object_id(product_id)
        if oid is None:
            raise not_found(product_id)

        async def load() -> dict[str, Any] | None:
            doc = await self.products.find_one({"_id": oid})
            return None if doc is None else ProductOut.from_doc(doc).model_dump()

        cached = await self.cache.product(product_id, load)
        if cached is None:
            raise not_found(product_id)
        return ProductOut.model_validate(cached)

    async def list(self, query: ListQuery) -> ProductPage:
        if query.min_price is not None and query.max_price is not None and query.min_price > query.max_price:
            raise ProblemError(422, "min_price: must not be greater than max_price", type_="validation-error")

        async def load() -> dict[str, Any]:
            flt = query.filter()
            cursor = self.products.find(flt).sort(SORTS[query.sort]).skip(query.offset).limit(query.limit)
            docs, total = await asyncio.gather(cursor.to_list(query.limit), self.products.count_documents(flt))
            return ProductPage(items=[ProductOut.from_doc(d) for d in docs], total=total, limit=query.limit,
                               offset=query.offset).model_dump()

        return ProductPage.model_validate(await self.cache.page(vars(query), load))

    # Writes (admin) ------------------------------------------------------------------------------

    async def create(self, req: CreateProductRequest) -> ProductOut:
        doc = Product(**req.model_dump()).model_dump_doc()

        async def work(session: AsyncClientSession) -> None:
            await self.products.insert_one(doc, session=session)
            events = [product_event(doc)]
            if doc["stock"] <= doc["low_stock_threshold"]:
                events.append(stock_low_event(doc))
            await add_to_outbox(self.db, events, session)

        try:
            await in_transaction(self.client, work)
        except DuplicateKeyError:
            raise ProblemError(409, f"sku: {req.sku!r} is already used by another product",
                               type_="sku-taken") from None
        await self.after_commit([str(doc["_id"])])
        if doc["stock"] <= doc["low_stock_threshold"]:
            STOCK_LOW.inc()
        log.info("product %s created (sku %s)", doc["_id"], doc["sku"])
        return ProductOut.from_doc(doc)

    async def update(self, product_id: str, req: UpdateProductRequest) -> ProductOut:
        oid = parse_object_id(product_id)
        if oid is None:
            raise not_found(product_id)
        changes = req.model_dump(exclude_unset=True)

        async def work(session: AsyncClientSession) -> dict[str, Any]:
            result = await self.products.update_one(
                {"_id": oid}, {"$set": {**changes, "updated_at": utcnow()}}, session=session)
            if result.matched_count == 0:
                raise not_found(product_id)
            doc = await self.products.find_one({"_id": oid}, session=session)
            assert doc is not None
            await add_to_outbox(self.db, [product_event(doc)], session)
            return doc

        try:
            doc = await in_transaction(self.client, work)
        except DuplicateKeyError:
            raise ProblemError(409, f"sku: {changes.get('sku')!r} is already used by another product",
                               type_="sku-taken") from None
        await self.after_commit([product_id])
        log.info("product %s updated (%s)", product_id, ", ".join(sorted(changes)))
        return ProductOut.from_doc(doc)

    async def delete(self, product_id: str) -> None:
        oid = parse_object_id(product_id)
        if oid is None:
            raise not_found(product_id)

        async def work(session: AsyncClientSession) -> None:
            # A read and a delete by _id, not ``findAndModify`` (a scan of the whole collection in SecantusDB,
            # the stand-in database: docs/saga.md, "Statements that scan"); the transaction keeps them one.
            doc = await self.products.find_one({"_id": oid}, session=session)
            if doc is None or (await self.products.delete_one({"_id": oid}, session=session)).deleted_count != 1:
                raise not_found(product_id)
            await add_to_outbox(self.db, [product_event(doc, deleted=True)], session)

        await in_transaction(self.client, work)
        await self.after_commit([product_id])
        log.info("product %s deleted", product_id)

    async def adjust_stock(self, product_id: str, delta: int) -> ProductOut:
        """Add ``delta`` (may be negative) to the stock; 409 when the stock would go below 0."""
        oid = parse_object_id(product_id)
        if oid is None:
            raise not_found(product_id)

        async def work(session: AsyncClientSession) -> dict[str, Any]:
            guard: dict[str, Any] = {"_id": oid}
            if delta < 0:
                guard["stock"] = {"$gte": -delta}
            result = await self.products.update_one(
                guard, {"$inc": {"stock": delta}, "$set": {"updated_at": utcnow()}}, session=session)
            doc = await self.products.find_one({"_id": oid}, session=session)
            if doc is None:
                raise not_found(product_id)
            if result.modified_count == 0:
                raise ProblemError(409, f"delta: stock is {doc['stock']}, removing {-delta} would take it below 0",
                                   type_="insufficient-stock", stock=doc["stock"])
            events = [product_event(doc)]
            if crossed_low_threshold(doc["stock"] - delta, doc["stock"], doc["low_stock_threshold"]):
                events.append(stock_low_event(doc))
            await add_to_outbox(self.db, events, session)
            return doc

        doc = await in_transaction(self.client, work)
        await self.after_commit([product_id])
        if crossed_low_threshold(doc["stock"] - delta, doc["stock"], doc["low_stock_threshold"]):
            STOCK_LOW.inc()
        log.info("stock of product %s adjusted by %+d to %d", product_id, delta, doc["stock"])
        return ProductOut.from_doc(doc)

    async def is_empty(self) -> bool:
        return await self.products.count_documents({}, limit=1) == 0
