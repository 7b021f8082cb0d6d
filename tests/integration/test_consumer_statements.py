"""What each consumer hop of one order costs the database: its statements, counted with a PyMongo CommandListener.

Each handler is called directly with the deliveries of one order (as a light load hands them over:
a batch of one), against the session's SecantusDB, and the statements it sends are compared with the
list in docs/saga.md ("Statements per hop"). A statement added back (a handled-event marker where the
effect is idempotent by itself, a read the batch already has) fails here. Each handler is also handed
the same deliveries again: a redelivery changes nothing, and costs only its reads.

Also here: ``microshop_transaction_retries_total`` counts the transactions run again (a write conflict
between two transactions on one document, a redelivery's marker) per service and reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from alerts.notifier import Notifier
from alerts.push import Channels, PushHub
from analytics.recorder import Recorder
from orders.catalog import CatalogClient
from orders.saga import OrderSaga
from orders.service import OrderBook
from products.reservations import StockReservations
from shopkit.contracts.events import (
    AlertSent,
    EventData,
    OrderCreated,
    OrderLine,
    OrderUpdated,
    ProductUpdated,
    StockLow,
    StockReserved,
)
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import Delivery
from shopkit.messaging.outbox import OutboxRelay
from shopkit.metrics import TRANSACTION_RETRIES
from shopkit.mongo import HANDLED_EVENTS, apply_batch_once, in_transaction
from tests.support.bus import bus_for, no_cache, stocked_product

Statement = tuple[str, str | None]
COMMIT: Statement = ("commitTransaction", None)
WRITES = ("insert", "update", "delete", "findAndModify")


class Statements(monitoring.CommandListener):
    """Every command the client sends, as ``(command, collection)``; ``None`` for commands on no collection."""

    def __init__(self) -> None:
        self.sent: list[Statement] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.sent.append((event.command_name, target if isinstance(target, str) else None))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    async def of(self, call: Callable[[], Awaitable[object]]) -> list[Statement]:
        """The statements ``call`` sends."""
        start = len(self.sent)
        await call()
        return self.sent[start:]


@pytest.fixture
async def counted(mongo_url: str) -> AsyncIterator[tuple[AsyncMongoClient[Any], AsyncDatabase[Any], Statements]]:
    """A client that counts its statements, and a database of its own."""
    listener = Statements()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener],
                                                     appname=f"stmt{uuid.uuid4().hex[:6]}")
    yield client, client[f"h{uuid.uuid4().hex[:10]}"], listener
    await client.close()


def delivery(event: CloudEvent, consumer: str) -> Delivery[Any]:
    data = event.data
    model: type[EventData] = {m.TYPE: m for m in (OrderCreated, OrderUpdated, StockReserved, StockLow,
                                                  ProductUpdated, AlertSent)}[event.type]
    return Delivery(event, model.model_validate(data), f"{consumer}.{event.type}")


def created(order_id: str, product_id: str) -> CloudEvent:
    return new_event(OrderCreated(order_id=order_id, customer_id="c1", total=100, currency="EUR",
                                  items=(OrderLine(product_id=product_id, name="Mug", unit_price=100, quantity=1),)),
                     "/tests")


def updated(order_id: str, product_id: str, old: Any, new: Any) -> CloudEvent:
    return new_event(OrderUpdated(order_id=order_id, customer_id="c1", old_status=old, new_status=new, status=new,
                                  total=100, currency="EUR",
                                  items=(OrderLine(product_id=product_id, name="Mug", unit_price=100, quantity=1),)),
                     "/tests")


Db = tuple[AsyncMongoClient[Any], AsyncDatabase[Any], Statements]


async def test_products_reserves_an_order_with_four_statements_and_a_commit(counted: Db) -> None:
    client, db, statements = counted
    pid = await stocked_product(db, "S-1", stock=5, low_stock_threshold=0)
    reservations = StockReservations(client, db, no_cache)
    batch = [delivery(created(str(ObjectId()), pid), "products")]
    sent = await statements.of(lambda: reservations.reserve(batch))
    # Optimistic: the reservation record is not read first (an order almost never has one yet).
    assert sent == [("find", "products"), ("update", "products"), ("insert", "reservations"), ("insert", "outbox"),
                    COMMIT]
    again = await statements.of(lambda: reservations.reserve(batch))
    # Redelivered: its record exists, the insert aborts the attempt, and the retry reads the records first.
    assert again[-4:] == [("insert", "reservations"), ("abortTransaction", None), ("find", "reservations"), COMMIT]
    assert await db["products"].find_one({"_id": ObjectId(pid)}, {"_id": 0, "stock": 1}) == {"stock": 4}
    assert await db[HANDLED_EVENTS].count_documents({}) == 0


async def test_products_releases_a_cancelled_order_once_without_a_marker(counted: Db) -> None:
    client, db, statements = counted
    pid = await stocked_product(db, "S-2", stock=5, low_stock_threshold=0)
    reservations = StockReservations(client, db, no_cache)
    order_id = str(ObjectId())
    await reservations.reserve([delivery(created(order_id, pid), "products")])
    cancel = [delivery(updated(order_id, pid, "confirmed", "cancelled"), "products")]
    sent = await statements.of(lambda: reservations.release(cancel))
    assert sent == [("find", "reservations"), ("update", "reservations"), ("update", "products"),
                    ("find", "products"), ("insert", "outbox"), COMMIT]
    again = await statements.of(lambda: reservations.release(cancel))
    assert again == [("find", "reservations"), COMMIT]
    assert await db["products"].find_one({"_id": ObjectId(pid)}, {"_id": 0, "stock": 1}) == {"stock": 5}
    confirmed = [delivery(updated(order_id, pid, "pending", "confirmed"), "products")]
    assert await statements.of(lambda: reservations.release(confirmed)) == [], "a confirmation is nothing to products"


async def test_orders_settles_a_reply_with_three_statements_and_a_commit(counted: Db) -> None:
    client, db, statements = counted
    book = OrderBook(client, db, CatalogClient("http://127.0.0.1:9", 1.0), OutboxRelay(db, bus_for("orders")))
    saga = OrderSaga(book)
    oid = ObjectId()
    await db["orders"].insert_one({"_id": oid, "customer_id": "c1", "status": "pending", "total": 100,
                                   "currency": "EUR", "items": [{"product_id": "p", "name": "P", "unit_price": 100,
                                                                 "quantity": 1}]})
    batch = [delivery(new_event(StockReserved(order_id=str(oid)), "/t"), "orders")]
    sent = await statements.of(lambda: saga.settle(batch))
    # A read and a guarded update, never findAndModify: SecantusDB scans the whole collection for one.
    assert sent == [("find", "orders"), ("update", "orders"), ("insert", "outbox"), COMMIT]
    again = await statements.of(lambda: saga.settle(batch))  # redelivered: no longer pending
    assert again == [("find", "orders"), COMMIT]
    assert await saga.settle(batch) == {str(oid): "left confirmed"}
    assert await db["orders"].find_one({"_id": oid}, {"_id": 0, "status": 1}) == {"status": "confirmed"}
    assert await db["outbox"].count_documents({}) == 1
    assert await db[HANDLED_EVENTS].count_documents({}) == 0


async def test_alerts_order_events_need_no_marker_and_stock_low_keeps_its_own(counted: Db) -> None:
    client, db, statements = counted
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        hub = PushHub(redis, Channels(f"h{uuid.uuid4().hex[:6]}."))
        notifier = Notifier(client, db, OutboxRelay(db, bus_for("alerts")), hub)
        # The usual order: order_created inserts its order's state, order_updated moves it (a guarded update):
        # one statement each on order_states.
        one = (("update", "order_states"), ("insert", "alerts"), ("insert", "outbox"), COMMIT)
        assert await statements.of(lambda: notifier.handle([delivery(created("o2", "p"), "alerts")])) == list(one)
        moved = [delivery(updated("o2", "p", "pending", "confirmed"), "alerts")]
        assert await statements.of(lambda: notifier.handle(moved)) == list(one)
        late = [delivery(created("o2", "p"), "alerts")]  # a second order_created of the order, after its confirmation
        assert await statements.of(lambda: notifier.handle(late)) == [("update", "order_states")] * 2 + [COMMIT]
        assert await notifier.handle(late) == [], "an order never goes back to pending"
        # Out of order: the confirmation before the order's creation. The guarded update finds no state; the
        # state is inserted.
        confirmed = [delivery(updated("o1", "p", "pending", "confirmed"), "alerts")]
        sent = await statements.of(lambda: notifier.handle(confirmed))
        assert sent == [("update", "order_states"), ("update", "order_states"), ("insert", "alerts"),
                        ("insert", "outbox"), COMMIT]
        assert await statements.of(lambda: notifier.handle(confirmed)) == [("update", "order_states")] * 2 + [COMMIT]
        assert await notifier.handle(confirmed) == [], "a redelivery pushes nothing"
        assert await notifier.handle([delivery(created("o1", "p"), "alerts")]) == [], "nor its late creation"
        assert {doc["_id"]: doc["status"] async for doc in db["order_states"].find()} == {"o1": "confirmed",
                                                                                         "o2": "confirmed"}
        low = [delivery(new_event(StockLow(product_id="p", name="Mug", stock=1, low_stock_threshold=2), "/t"),
                        "alerts")]
        sent = await statements.of(lambda: notifier.handle(low))
        assert sent == [("insert", HANDLED_EVENTS), ("insert", "alerts"), ("insert", "outbox"), COMMIT]
        await notifier.handle(low)  # redelivered: its marker aborts the first attempt, nothing is added
    finally:
        await redis.aclose()
    assert await db["alerts"].count_documents({}) == 4  # o2 pending and confirmed, o1 confirmed, the stock alert
    assert await db["outbox"].count_documents({}) == 4


async def test_analytics_folds_one_orders_five_events_into_one_transaction(counted: Db) -> None:
    client, db, statements = counted
    invalidations: list[int] = []

    async def invalidate() -> None:
        invalidations.append(1)

    recorder = Recorder(client, db, invalidate)
    order_id = str(ObjectId())
    events = [
        created(order_id, "p1"),
        new_event(ProductUpdated(id="p1", product_id="p1", sku="S", name="Mug", category="c", price=100,
                                 currency="EUR", stock=4, low_stock_threshold=1), "/t"),
        new_event(AlertSent(alert_id="a1", type="order_status", recipient="customer", customer_id="c1",
                            order_id=order_id, status="pending"), "/t"),
        updated(order_id, "p1", "pending", "confirmed"),
        new_event(AlertSent(alert_id="a2", type="order_status", recipient="customer", customer_id="c1",
                            order_id=order_id, status="confirmed"), "/t"),
    ]
    batch = [delivery(e, "analytics") for e in events]
    sent = await statements.of(lambda: recorder.record(batch))
    # Markers for the two alert_sent only (their counter is an $inc); the order and the product merge.
    assert sent == [("insert", HANDLED_EVENTS), ("find", "orders"), ("update", "orders"), ("find", "products"),
                    ("update", "products"), ("update", "counters"), COMMIT]
    counters = {doc["_id"]: doc["value"] async for doc in db["counters"].find({})}
    await recorder.record(batch)  # redelivered whole: the markers abort it, the retry changes nothing
    await recorder.record(batch[:2] + batch[3:4])  # the order and product events alone: merged, zero delta
    assert {doc["_id"]: doc["value"] async for doc in db["counters"].find({})} == counters
    assert counters["status:confirmed"] == 1 and counters["alerts_sent:order_status"] == 2
    assert "status:pending" not in counters or counters["status:pending"] == 0


def retries(service: str, reason: str) -> float:
    return TRANSACTION_RETRIES.labels(service, reason)._value.get()


async def test_a_write_conflict_and_a_redelivered_marker_count_as_transaction_retries(counted: Db) -> None:
    client, db, _ = counted
    service = str(client.options.pool_options.metadata["application"]["name"])
    await db["hot"].insert_one({"_id": 1, "n": 0})
    first_wrote, second_tried = asyncio.Event(), asyncio.Event()
    runs = {"first": 0, "second": 0}

    async def first(session: AsyncClientSession) -> None:
        runs["first"] += 1
        await db["hot"].update_one({"_id": 1}, {"$inc": {"n": 1}}, session=session)
        first_wrote.set()
        await asyncio.wait_for(second_tried.wait(), 10)  # hold the write until the other one ran into it

    async def second(session: AsyncClientSession) -> None:
        runs["second"] += 1
        await first_wrote.wait()
        try:
            await db["hot"].update_one({"_id": 1}, {"$inc": {"n": 10}}, session=session)
        finally:
            second_tried.set()

    before = retries(service, "write-conflict") + retries(service, "commit")
    await asyncio.gather(in_transaction(client, first), in_transaction(client, second))
    assert await db["hot"].find_one({"_id": 1}) == {"_id": 1, "n": 11}, "both committed, once each"
    assert runs["second"] + runs["first"] > 2, "one of them ran again"
    assert retries(service, "write-conflict") + retries(service, "commit") - before == runs["second"] + runs[
        "first"] - 2

    async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
        await db["effects"].insert_one({"fresh": fresh}, session=session)

    duplicate = retries(service, "duplicate-marker")
    await apply_batch_once(client, db, ["c:e1"], effect)
    assert retries(service, "duplicate-marker") == duplicate
    applied, _ = await apply_batch_once(client, db, ["c:e1", "c:e2"], effect)  # e1 again: a redelivery
    assert applied == [False, True]
    assert retries(service, "duplicate-marker") == duplicate + 1
