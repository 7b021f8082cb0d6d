"""Destructive saga tests: a consumer SIGKILLed mid-flight, and the broker connections dropped.

They run on their own shop (own SecantusDB, own namespace): the session shop is never killed.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from devtools.procs import Proc, free_port
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.metrics import parse_samples, total
from tests.support.saga import (
    WireTap,
    close_broker_connections,
    cloud_event,
    create_product,
    eventually,
    login,
    new_customer,
    place_order,
    public_client,
    publish_event,
    stock_of,
    wait_for_status,
)
from tests.support.shops import running, shop_factory


@pytest.fixture(scope="module")
def own_shop(key_file: Path, namespace: str) -> Iterator[LocalShop]:
    # Under the session's namespace, so the session's clean-up deletes its queues too.
    local = shop_factory()(key_file=key_file, namespace=f"{namespace}crash{uuid.uuid4().hex[:6]}.",
                      services=["customers", "products", "orders"], out=None,
                      # Small batches: a kill must land between commits (with the default 64 the first
                      # batch can take the whole backlog, and there is no "mid-flight" to test).
                      env={"MICROSHOP_LOG_LEVEL": "INFO", "MICROSHOP_BATCH_MAX_SIZE": "4"})
    with running(local):
        yield local


@pytest.fixture
async def client(own_shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    async with public_client(own_shop) as c:
        yield c


@pytest.fixture
async def mongo(own_shop: LocalShop) -> AsyncIterator[AsyncMongoClient[Any]]:
    assert own_shop.mongo is not None
    c: AsyncMongoClient[Any] = AsyncMongoClient(own_shop.mongo, tz_aware=True)
    try:
        yield c
    finally:
        await c.close()


async def test_products_killed_mid_flight_loses_nothing_and_counts_nothing_twice(
        own_shop: LocalShop, client: httpx.AsyncClient, mongo: AsyncMongoClient[Any]) -> None:
    admin = await login(client, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    product = await create_product(client, admin, stock=60, low_stock_threshold=0)
    products = mongo["products"]["products"]
    oid = ObjectId(product["id"])
    tap = await WireTap(own_shop.namespace).start()
    proc = own_shop.procs["products"]
    # The orders are published straight to the broker (as the orders relay does): the products HTTP
    # API is frozen too while the consumer is, so orders could not price new orders meanwhile.
    order_ids = [uuid.uuid4().hex[:24] for _ in range(80)]
    try:
        await _burst(own_shop, proc, products, oid, order_ids)
        # Mid-flight: some reservations committed, others received and not yet acked.
        own_shop.kill_service("products")
        stock_at_kill = (await products.find_one({"_id": oid}, {"stock": 1}) or {})["stock"]
        assert stock_at_kill > 0, "the consumer finished before it was killed; the test proved nothing"
        own_shop.start_service("products")
        await _settled_exactly(tap, mongo, order_ids)
        assert await stock_of(client, product["id"]) == 0
    finally:
        proc.signal(signal.SIGCONT)
        if not own_shop.procs["products"].running:
            own_shop.start_service("products")
        await tap.close()

    # And the shop still works end to end afterwards.
    buyer = await new_customer(client)
    refill = await client.post(f"/products/{product['id']}/stock", json={"delta": 1},
                               headers={"Authorization": f"Bearer {admin}"})
    assert refill.status_code == 200, refill.text
    order = await place_order(client, buyer, [(product["id"], 1)])
    assert (await wait_for_status(client, buyer, order["id"]))["status"] == "confirmed"


async def _burst(shop: LocalShop, proc: Proc, products: Any, oid: ObjectId, order_ids: list[str]) -> None:
    """One ``order_created`` per order id (1 of the product each), published while ``proc`` is frozen, so
    the backlog piles up in the queue and the consumer's prefetch window; returns once reserving began."""
    proc.signal(signal.SIGSTOP)
    for order_id in order_ids:
        await publish_event(shop.namespace, cloud_event("order_created", {
            "order_id": order_id, "customer_id": "crash", "items": [{"product_id": str(oid), "quantity": 1}]}))
    proc.signal(signal.SIGCONT)

    async def reserving() -> bool:
        doc = await products.find_one({"_id": oid}, {"stock": 1})
        return doc is not None and doc["stock"] < len(order_ids) * 3 // 4

    await eventually(reserving, timeout=30, interval=0.002, what="first reservation")


async def _settled_exactly(tap: WireTap, mongo: AsyncMongoClient[Any], order_ids: list[str]) -> None:
    """Every order got one stock reply: 3/4 of them reserved (the stock), the rest rejected, none both."""
    def settled() -> set[str]:
        return {m["data"]["order_id"] for m in tap.messages if m["type"] in ("stock_reserved", "stock_rejected")}

    # Up to 2 minutes: a process SIGKILLed inside a transaction leaves it open on the database until its
    # lifetime limit (60 s) aborts it, and the survivor's writes to the same product wait for that.
    await eventually(lambda: len(settled() & set(order_ids)) == len(order_ids), timeout=120,
                     what="a stock reply for every order")
    reserved = {m["data"]["order_id"] for m in tap.messages if m["type"] == "stock_reserved"}
    rejected = {m["data"]["order_id"] for m in tap.messages if m["type"] == "stock_rejected"}
    assert len(reserved & set(order_ids)) == len(order_ids) * 3 // 4
    assert len(rejected & set(order_ids)) == len(order_ids) // 4
    assert not reserved & rejected
    assert await mongo["products"]["reservations"].count_documents(
        {"_id": {"$in": order_ids}, "status": "reserved"}) == len(order_ids) * 3 // 4


async def _consumed(port: int) -> float:
    """How many deliveries the process on ``port`` committed in consumer batches (its /metrics)."""
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200, r.text
    return total(parse_samples(r.text), "microshop_consumer_batch_size_sum")


async def test_a_standby_takes_over_when_the_active_consumer_is_killed_mid_burst(
        own_shop: LocalShop, client: httpx.AsyncClient, mongo: AsyncMongoClient[Any]) -> None:
    """``MICROSHOP_CONSUMERS=single-active`` (the default): of two products processes only the first consumes;
    SIGKILLed mid-burst, the second takes its queues over at once, and every order still settles exactly."""
    admin = await login(client, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    product = await create_product(client, admin, stock=60, low_stock_threshold=0)
    products = mongo["products"]["products"]
    oid = ObjectId(product["id"])
    standby_port = free_port()
    standby = own_shop.group.add(own_shop.proc_for("products", port=standby_port, label="products-standby")).start()
    tap = await WireTap(own_shop.namespace).start()
    active = own_shop.procs["products"]
    order_ids = [uuid.uuid4().hex[:24] for _ in range(80)]
    try:
        standby.wait_ready(60)
        await _burst(own_shop, active, products, oid, order_ids)
        # Frozen at once (alive, still holding its queues), so the check of the standby can't let it finish.
        active.signal(signal.SIGSTOP)
        consumed_by_standby = await _consumed(standby_port)
        stock_at_kill = (await products.find_one({"_id": oid}, {"stock": 1}) or {})["stock"]
        own_shop.kill_service("products")  # the active consumer, mid-burst
        assert stock_at_kill > 0, "the consumer finished before it was killed; the test proved nothing"
        assert consumed_by_standby == 0, "the standby consumed while the active consumer lived"

        # Nothing restarts the killed process: the standby alone answers the rest.
        await _settled_exactly(tap, mongo, order_ids)
        assert await _consumed(standby_port) > 0
        assert (await products.find_one({"_id": oid}, {"stock": 1}) or {})["stock"] == 0
    finally:
        active.signal(signal.SIGCONT)
        if not own_shop.procs["products"].running:
            own_shop.start_service("products")
        standby.stop()
        own_shop.group.procs.remove(standby)
        await tap.close()



async def test_broker_connections_dropped_and_restored_publishing_and_consuming_resume(
        own_shop: LocalShop, client: httpx.AsyncClient, mongo: AsyncMongoClient[Any]) -> None:
    admin = await login(client, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    buyer = await new_customer(client)
    product = await create_product(client, admin, stock=100)
    first = await place_order(client, buyer, [(product["id"], 1)])
    assert (await wait_for_status(client, buyer, first["id"]))["status"] == "confirmed"

    pids = set()
    for name in ("products", "orders"):
        pid = own_shop.procs[name].pid  # the service's own pid, also when it runs in a container
        assert pid is not None
        pids.add(pid)
    assert close_broker_connections(pids) >= 2
    # Orders placed while the services reconnect wait in the outbox and go out afterwards.
    orders = await asyncio.gather(*(place_order(client, buyer, [(product["id"], 1)]) for _ in range(20)))
    finals = [await wait_for_status(client, buyer, o["id"], timeout=60) for o in orders]
    assert {f["status"] for f in finals} == {"confirmed"}
    assert await stock_of(client, product["id"]) == 100 - 21

    async def outboxes_drained() -> bool:
        pending = [await mongo[db]["outbox"].count_documents({"sent": False}) for db in ("orders", "products")]
        return pending == [0, 0]

    await eventually(outboxes_drained, timeout=30, what="both outboxes drained")
    # A second drop is survived too (the robust connection re-arms itself).
    assert close_broker_connections(pids) >= 2
    last = await place_order(client, buyer, [(product["id"], 2)])
    assert (await wait_for_status(client, buyer, last["id"], timeout=60))["status"] == "confirmed"
