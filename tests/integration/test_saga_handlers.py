"""The saga's and the notifier's batch handlers under FastStream's TestRabbitBroker, against SecantusDB.

The broker is FastStream's in-memory test broker (deliveries go straight to the kit's batching
subscriber); the database is the session's real SecantusDB and the push hub a real Redis. Each
test uses a database of its own.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from typing import Any

from bson import ObjectId
from faststream.rabbit import TestRabbitBroker
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from alerts.notifier import Notifier
from alerts.push import Channels, PushHub
from orders.catalog import CatalogClient
from orders.saga import OrderSaga
from orders.service import OrderBook
from products.reservations import StockReservations
from shopkit.contracts.events import (
    OrderCreated,
    OrderLine,
    OrderUpdated,
    StockLow,
    StockRejected,
    StockReserved,
)
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import EventBus
from shopkit.messaging.outbox import OUTBOX, OutboxRelay
from tests.support.bus import bus_for, no_cache, order_created, reserving_bus, stocked_product

Db = tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]




async def outbox_events(db: AsyncDatabase[Any]) -> list[dict[str, Any]]:
    return [doc["event"] async for doc in db[OUTBOX].find({}).sort("seq", 1)]


async def publish_all(bus: EventBus, events: Iterable[CloudEvent]) -> None:
    """Concurrently, as a consumer's prefetch window delivers them: they share batches."""
    await asyncio.gather(*(bus.publish(e) for e in events))


async def test_reserve_decides_a_batch_in_arrival_order_and_a_redelivery_changes_nothing(database: Db) -> None:
    client, db = database
    pid = await stocked_product(db, "H-1", stock=5, low_stock_threshold=1)
    bus = bus_for("products")
    sub = bus.subscribe(OrderCreated, StockReservations(client, db, no_cache).reserve, linger=0.05)
    quantities = {"o0": 2, "o1": 4, "o2": 3, "o3": 1}  # 5 in stock: not all fit, so the order decides
    events = [order_created(order_id, pid, q) for order_id, q in quantities.items()]
    async with TestRabbitBroker(bus.broker):
        await publish_all(bus, events)
        await publish_all(bus, events[:2])  # redelivered
    assert sub.batcher is not None and sub.batcher.stats.largest > 1  # they really shared a batch
    # Concurrent publishes arrive in no fixed order (a loaded machine reorders them). The replies are
    # written in decision order: each order must have been decided first come, first served in it.
    replies = [(e["type"], e["data"]["order_id"]) for e in await outbox_events(db) if e["type"].startswith("stock_r")]
    assert sorted(order_id for _, order_id in replies) == sorted(quantities), "one reply per order, none twice"
    left, expected = 5, {}
    for _, order_id in replies:
        fits = quantities[order_id] <= left
        left -= quantities[order_id] if fits else 0
        expected[order_id] = "reserved" if fits else "rejected"
    assert [(t.removeprefix("stock_"), o) for t, o in replies] == [(expected[o], o) for _, o in replies]
    assert "rejected" in expected.values(), "the stock ran out on the way"
    assert (await db["products"].find_one({"_id": ObjectId(pid)}))["stock"] == left
    decided = {doc["_id"]: doc["status"] async for doc in db["reservations"].find({})}
    assert decided == expected
    low = [e for e in await outbox_events(db) if e["type"] == "stock_low"]
    # Crossed the threshold (1) once, if at all: reported with the stock of the batch that crossed it.
    assert len(low) == (1 if left <= 1 else 0) and all(left <= e["data"]["stock"] <= 1 for e in low), low


async def test_release_gives_stock_back_once_and_a_cancel_first_leaves_a_tombstone(database: Db) -> None:
    client, db = database
    pid = await stocked_product(db, "H-2", stock=4, low_stock_threshold=0)
    bus = reserving_bus(client, db)

    def cancelled(order_id: str) -> CloudEvent:
        return new_event(OrderUpdated(order_id=order_id, customer_id="c1", old_status="confirmed",
                                      new_status="cancelled", status="cancelled"), "/tests")

    async with TestRabbitBroker(bus.broker):
        await bus.publish(order_created("kept", pid, 3))
        cancel = cancelled("kept")
        await publish_all(bus, [cancel, cancel, cancelled("early")])  # twice, and one before its order
        await bus.publish(order_created("early", pid, 1))
    assert (await db["products"].find_one({"_id": ObjectId(pid)}))["stock"] == 4
    decided = {doc["_id"]: doc["status"] async for doc in db["reservations"].find({})}
    assert decided == {"kept": "released", "early": "cancelled"}


async def test_settle_confirms_or_rejects_pending_orders_only(database: Db) -> None:
    client, db = database
    bus = bus_for("orders")
    book = OrderBook(client, db, CatalogClient("http://127.0.0.1:9", 1.0), OutboxRelay(db, bus))
    saga = OrderSaga(book)
    shared = bus.batcher(saga.settle, linger=0.05)
    bus.subscribe(StockReserved, saga.settle, batcher=shared)
    bus.subscribe(StockRejected, saga.settle, batcher=shared)
    ids = [ObjectId() for _ in range(4)]
    for oid, status in zip(ids, ["pending", "pending", "pending", "cancelled"], strict=True):
        await db["orders"].insert_one({"_id": oid, "customer_id": "c1", "status": status, "total": 100,
                                       "currency": "EUR", "items": [{"product_id": "p", "name": "P",
                                                                     "unit_price": 100, "quantity": 1}]})
    kinds = [StockReserved, StockReserved, StockRejected, StockReserved]
    replies = [new_event(kind(order_id=str(oid)), "/t") for kind, oid in zip(kinds, ids, strict=True)]
    async with TestRabbitBroker(bus.broker):
        await publish_all(bus, replies)
        await publish_all(bus, replies)  # redelivered: nothing moves twice
    statuses = {doc["_id"]: doc["status"] async for doc in db["orders"].find({})}
    assert [statuses[oid] for oid in ids] == ["confirmed", "confirmed", "rejected", "cancelled"]
    updates = [e for e in await outbox_events(db) if e["type"] == "order_updated"]
    assert sorted((e["data"]["order_id"], e["data"]["new_status"]) for e in updates) == sorted(
        [(str(ids[0]), "confirmed"), (str(ids[1]), "confirmed"), (str(ids[2]), "rejected")])
    for e in updates:
        OrderUpdated.model_validate(e["data"])


async def test_notifier_stores_alerts_once_drops_stale_events_and_pushes_after_commit(database: Db) -> None:
    client, db = database
    bus = bus_for("alerts")
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    channels = Channels(f"h{uuid.uuid4().hex[:6]}.")
    hub = PushHub(redis, channels)
    notifier = Notifier(client, db, OutboxRelay(db, bus), hub)
    shared = bus.batcher(notifier.handle, linger=0.05)  # as the alerts app wires it: one batch for all three
    for model in (OrderCreated, OrderUpdated, StockLow):
        bus.subscribe(model, notifier.handle, batcher=shared)
    listener = redis.pubsub()
    await listener.subscribe(channels.user("c1"), channels.role("admin"))
    confirmed = new_event(OrderUpdated(order_id="o1", customer_id="c1", old_status="pending", new_status="confirmed",
                                       status="confirmed"), "/t")
    created = new_event(OrderCreated(order_id="o1", customer_id="c1", items=(OrderLine(product_id="p", quantity=1),)),
                        "/t")
    try:
        async with TestRabbitBroker(bus.broker):
            await bus.publish(confirmed)
            await publish_all(bus, [created, confirmed])  # stale (pending after confirmed) and a redelivery
            await bus.publish(new_event(StockLow(product_id="p", name="Mug", stock=1, low_stock_threshold=2), "/t"))
        frames: list[str] = []
        deadline = asyncio.get_running_loop().time() + 5
        while len(frames) < 3 and asyncio.get_running_loop().time() < deadline:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:  # (None also stands for the subscription confirmations)
                frames.append(json.loads(message["data"])["type"])
        if (extra := await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
            frames.append(json.loads(extra["data"])["type"])  # nothing more may come
    finally:
        await listener.aclose()
        await redis.aclose()
    alerts = [(doc["recipient"], doc["type"], doc["data"].get("status")) async for doc in db["alerts"].find({})]
    assert sorted(alerts) == [("role:admin", "stock_low", None), ("user:c1", "order_status", "confirmed")]
    assert frames.count("order_status") == 1 and frames.count("alert") == 2
    assert [e["type"] for e in await outbox_events(db)] == ["alert_sent", "alert_sent"]
