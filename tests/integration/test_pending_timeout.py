"""Nothing stays pending forever: the orders sweeper rejects stale pending orders, products releases their stock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from bson import ObjectId
from faststream.rabbit import TestRabbitBroker
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from orders.catalog import CatalogClient
from orders.saga import OrderSaga
from orders.service import OrderBook
from orders.sweeper import PendingSweeper
from shopkit.contracts.events import OrderUpdated, StockReserved
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.outbox import OUTBOX, OutboxRelay
from shopkit.mongo import utcnow
from tests.support.bus import bus_for, order_created, reserving_bus, stocked_product

Db = tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]




def pending_order(oid: ObjectId, age_seconds: float) -> dict[str, Any]:
    return {"_id": oid, "customer_id": "c1", "status": "pending", "total": 100, "currency": "EUR",
            "items": [{"product_id": "p", "name": "P", "unit_price": 100, "quantity": 1}],
            "created_at": utcnow() - timedelta(seconds=age_seconds), "updated_at": utcnow()}


async def test_orders_pending_past_the_timeout_are_rejected_once_and_a_late_reply_changes_nothing(
        database: Db) -> None:
    client, db = database
    bus = bus_for("orders")
    book = OrderBook(client, db, CatalogClient("http://127.0.0.1:9", 1.0), OutboxRelay(db, bus))
    stale, fresh, confirmed = ObjectId(), ObjectId(), ObjectId()
    await db["orders"].insert_many([pending_order(stale, 10.0), pending_order(fresh, 0.0),
                                    {**pending_order(confirmed, 5.0), "status": "confirmed"}])
    sweeper = PendingSweeper(book, timeout_seconds=3.0, every_seconds=0.05)
    sweeper.start()
    try:
        async with asyncio.timeout(5):
            while (await db["orders"].find_one({"_id": stale}))["status"] != "rejected":
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # more sweeps: nothing happens twice
        assert await sweeper.sweep_once() == []  # ``fresh`` is not past the timeout yet
    finally:
        await sweeper.stop()
    statuses = {doc["_id"]: doc["status"] async for doc in db["orders"].find({})}
    assert statuses == {stale: "rejected", fresh: "pending", confirmed: "confirmed"}
    updates = [doc["event"]["data"] async for doc in db[OUTBOX].find({}) if doc["event"]["type"] == "order_updated"]
    assert [(u["order_id"], u["old_status"], u["new_status"], u["reason"]) for u in updates
            if u["order_id"] == str(stale)] == [(str(stale), "pending", "rejected", "timeout")]

    # The stock reply arrives after all: the rejected order stays rejected.
    saga = OrderSaga(book)
    bus.subscribe(StockReserved, saga.settle)
    async with TestRabbitBroker(bus.broker):
        await bus.publish(new_event(StockReserved(order_id=str(stale)), "/t"))
    assert (await db["orders"].find_one({"_id": stale}))["status"] == "rejected"


def timed_out(order_id: str) -> CloudEvent:
    return new_event(OrderUpdated(order_id=order_id, customer_id="c1", old_status="pending", new_status="rejected",
                                  status="rejected", reason="timeout"), "/tests")


async def test_products_releases_what_it_reserved_for_an_order_rejected_on_timeout_in_either_order(
        database: Db) -> None:
    client, db = database
    pid = await stocked_product(db, "T-1", stock=5, low_stock_threshold=0)
    bus = reserving_bus(client, db)
    async with TestRabbitBroker(bus.broker):
        await bus.publish(order_created("slow", pid, 3))  # reserved, but orders timed it out meanwhile
        rejection = timed_out("slow")
        await bus.publish(rejection)
        await bus.publish(rejection)  # redelivered: released once
        await bus.publish(timed_out("early"))  # the rejection overtakes its order_created
        await bus.publish(order_created("early", pid, 2))
    assert (await db["products"].find_one({"_id": ObjectId(pid)}))["stock"] == 5
    decided = {doc["_id"]: doc["status"] async for doc in db["reservations"].find({})}
    assert decided == {"slow": "released", "early": "cancelled"}
