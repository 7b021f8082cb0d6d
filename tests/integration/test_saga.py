"""The order saga end to end, against real RabbitMQ, Redis and SecantusDB (the session shop)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from devtools.shop import LocalShop
from tests.support.metrics import parse_samples, total
from tests.support.saga import (
    WireTap,
    auth,
    cloud_event,
    create_product,
    eventually,
    new_customer,
    place_order,
    publish_event,
    publish_raw,
    queue_depth,
    stock_of,
    wait_for_status,
)


async def test_order_is_confirmed_stock_drops_and_events_flow_in_order(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, wire: WireTap) -> None:
    a = await create_product(shop_api, admin, stock=10, price=1250)
    b = await create_product(shop_api, admin, stock=5, price=99)
    request_id = f"saga-{uuid.uuid4().hex[:12]}"
    order = await place_order(shop_api, buyer, [(a["id"], 3), (b["id"], 2)], request_id=request_id)
    assert order["status"] == "pending"
    assert order["total"] == 3 * 1250 + 2 * 99 and order["currency"] == "EUR"
    assert [(i["name"], i["unit_price"]) for i in order["items"]] == [("Test product", 1250), ("Test product", 99)]

    done = await wait_for_status(shop_api, buyer, order["id"])
    assert done["status"] == "confirmed"
    assert await stock_of(shop_api, a["id"]) == 7
    assert await stock_of(shop_api, b["id"]) == 3

    events = await wire.wait_for(lambda m: m.get("data", {}).get("order_id") == order["id"], count=3)
    assert [e["type"] for e in events] == ["order_created", "stock_reserved", "order_updated"]
    assert events[2]["data"]["old_status"] == "pending" and events[2]["data"]["new_status"] == "confirmed"
    assert events[2]["data"]["customer_id"] == order["customer_id"]
    assert events[2]["data"]["total"] == order["total"] and events[2]["data"]["items"]
    # The request id of the POST is the correlation id of every event it caused.
    assert {e["correlationid"] for e in events} == {request_id}
    assert all(e["specversion"] == "1.0" and e["source"] and e["time"] for e in events)


async def test_200_concurrent_orders_for_100_items_confirm_exactly_100(
        shop_api: httpx.AsyncClient, admin: str) -> None:
    product = await create_product(shop_api, admin, stock=100, low_stock_threshold=0)
    buyers = await asyncio.gather(*(new_customer(shop_api) for _ in range(4)))
    observed: list[int] = []
    stop = asyncio.Event()

    async def watch_stock() -> None:
        while not stop.is_set():
            observed.append(await stock_of(shop_api, product["id"]))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_stock())
    limit = asyncio.Semaphore(50)

    async def one(i: int) -> dict[str, Any]:
        async with limit:
            return await place_order(shop_api, buyers[i % 4], [(product["id"], 1)])

    orders = await asyncio.gather(*(one(i) for i in range(200)))
    finals = [await wait_for_status(shop_api, buyers[i % 4], o["id"], timeout=90) for i, o in enumerate(orders)]
    stop.set()
    await watcher
    statuses = [f["status"] for f in finals]
    assert statuses.count("confirmed") == 100
    assert statuses.count("rejected") == 100
    assert await stock_of(shop_api, product["id"]) == 0
    assert observed and min(observed) >= 0


async def test_duplicate_order_created_reserves_once(
        shop: LocalShop, shop_api: httpx.AsyncClient, admin: str, namespace: str, wire: WireTap) -> None:
    product = await create_product(shop_api, admin, stock=10)
    order_id = uuid.uuid4().hex[:24]
    event = cloud_event("order_created", {"order_id": order_id, "customer_id": "c1", "total": 2000,
                                          "currency": "EUR", "items": [{"product_id": product["id"],
                                                                        "quantity": 2}]})
    await publish_event(namespace, event)
    await publish_event(namespace, event)  # the same event id again, as after a publisher crash
    await wire.wait_for(lambda m: m["type"] == "order_created" and m["id"] == event["id"], count=2)
    await wire.wait_for(lambda m: m["type"] == "stock_reserved" and m["data"]["order_id"] == order_id)
    # A later message on the same queue is handled after both copies: once it is, the duplicate was too.
    sentinel = cloud_event("order_created", {"order_id": uuid.uuid4().hex[:24], "customer_id": "c1",
                                             "items": [{"product_id": product["id"], "quantity": 1}]})
    await publish_event(namespace, sentinel)
    await wire.wait_for(lambda m: m["type"] == "stock_reserved"
                        and m["data"]["order_id"] == sentinel["data"]["order_id"])
    assert await stock_of(shop_api, product["id"]) == 10 - 2 - 1
    assert len([m for m in wire.of_order(order_id) if m["type"] == "stock_reserved"]) == 1


async def test_cancel_of_confirmed_order_restores_stock_once(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, namespace: str, wire: WireTap) -> None:
    product = await create_product(shop_api, admin, stock=8)
    order = await place_order(shop_api, buyer, [(product["id"], 3)])
    assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "confirmed"
    assert await stock_of(shop_api, product["id"]) == 5

    r = await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(buyer))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    await eventually(lambda: _stock_is(shop_api, product["id"], 8), what="stock released")

    again = await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(buyer))
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    # Even a redelivered cancellation event does not release twice.
    cancelled = await wire.wait_for(lambda m: m["type"] == "order_updated"
                                    and m["data"]["order_id"] == order["id"]
                                    and m["data"]["new_status"] == "cancelled")
    await publish_event(namespace, cancelled[0])
    await _drained(f"{namespace}products.order_updated")
    assert await stock_of(shop_api, product["id"]) == 8
    # One cancellation was ever published by orders (the tap also saw our re-delivered copy: same id).
    assert len({m["id"] for m in wire.of_order(order["id"]) if m["type"] == "order_updated"
                and m["data"]["new_status"] == "cancelled"}) == 1


async def test_products_is_sent_only_the_order_updated_statuses_it_acts_on(
        shop: LocalShop, shop_api: httpx.AsyncClient, admin: str, buyer: str, namespace: str) -> None:
    """order_updated is routed by its new status: products gets cancellations (and rejections), never a confirmation."""
    async def received(service: str, status: str) -> float:
        r = await metrics.get(f"{shop.url(service)}/metrics")
        assert r.status_code == 200, r.text
        return total(parse_samples(r.text), "faststream_received_messages_total",
                     handler=f"{namespace}order_exchange.order_updated.{status}")

    async with httpx.AsyncClient(timeout=10) as metrics:
        before = {(s, st): await received(s, st) for s in ("products", "alerts") for st in ("confirmed", "cancelled")}
        product = await create_product(shop_api, admin, stock=5)
        order = await place_order(shop_api, buyer, [(product["id"], 1)])
        assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "confirmed"
        r = await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(buyer))
        assert r.status_code == 200, r.text
        await eventually(lambda: _stock_is(shop_api, product["id"], 5), what="stock released")

        async def alerts_got_both() -> bool:
            return all([await received("alerts", st) > before["alerts", st] for st in ("confirmed", "cancelled")])

        await eventually(alerts_got_both, what="alerts to receive the confirmation and the cancellation")
        await _drained(f"{namespace}products.order_updated")
        assert await received("products", "cancelled") > before["products", "cancelled"]
        assert await received("products", "confirmed") == before["products", "confirmed"] == 0
    bindings = subprocess.run(["rabbitmqctl", "-q", "list_bindings", "source_name", "destination_name", "routing_key"],
                              capture_output=True, text=True, check=True).stdout
    keys = {line.split("\t")[2] for line in bindings.splitlines()
            if line.startswith(f"{namespace}order_exchange\t{namespace}products.order_updated\t")}
    assert keys == {"order_updated.cancelled", "order_updated.rejected"}


async def _stock_is(client: httpx.AsyncClient, product_id: str, expected: int) -> bool:
    return await stock_of(client, product_id) == expected


async def _drained(queue: str) -> None:
    """Wait until every message published to ``queue`` so far has been handled and acked."""
    await eventually(lambda: _queue_empty(queue), timeout=30, what=f"{queue} drained")


async def _queue_empty(name: str) -> bool:
    ready, unacked = queue_depth(name)
    return ready == 0 and unacked == 0


async def _reservation_status(db: AsyncDatabase[Any], order_id: str, status: str) -> bool:
    doc = await db["reservations"].find_one({"_id": order_id})
    return doc is not None and doc["status"] == status


async def test_cancel_while_pending_never_holds_stock_whatever_the_event_order(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, namespace: str, wire: WireTap,
        products_db: AsyncDatabase[Any]) -> None:
    product = await create_product(shop_api, admin, stock=10)
    line = [{"product_id": product["id"], "quantity": 4}]

    # Cancellation first, then the order: the late order_created must take nothing.
    late = uuid.uuid4().hex[:24]
    await publish_event(namespace, cloud_event("order_updated", {
        "order_id": late, "customer_id": "c1", "old_status": "pending", "new_status": "cancelled", "items": line}))
    await eventually(lambda: _reservation_status(products_db, late, "cancelled"), what="tombstone")
    await publish_event(namespace, cloud_event("order_created", {"order_id": late, "customer_id": "c1",
                                                                 "items": line}))
    # Order first, then the cancellation: the stock comes back.
    early = uuid.uuid4().hex[:24]
    await publish_event(namespace, cloud_event("order_created", {"order_id": early, "customer_id": "c1",
                                                                 "items": line}))
    await wire.wait_for(lambda m: m["type"] == "stock_reserved" and m["data"]["order_id"] == early)
    await publish_event(namespace, cloud_event("order_updated", {
        "order_id": early, "customer_id": "c1", "old_status": "pending", "new_status": "cancelled", "items": line}))
    await eventually(lambda: _stock_is(shop_api, product["id"], 10), what="early order's stock released")
    await eventually(lambda: _reservation_status(products_db, early, "released"), what="early released")
    await _drained(f"{namespace}products.order_created")
    assert await _reservation_status(products_db, late, "cancelled")  # the late order took nothing
    assert not [m for m in wire.of_order(late) if m["type"] in ("stock_reserved", "stock_rejected")]
    assert await stock_of(shop_api, product["id"]) == 10

    # And through the API: cancel right after placing; it ends cancelled without holding stock.
    order = await place_order(shop_api, buyer, [(product["id"], 4)])
    r = await shop_api.post(f"/orders/{order['id']}/cancel", headers=auth(buyer))
    assert r.status_code == 200, r.text
    # Either race outcome is right: reserved then released, or the cancel came first (a tombstone,
    # and the order_created that follows takes nothing and sends no reply).
    async def settled() -> bool:
        return (await _reservation_status(products_db, order["id"], "released")
                or await _reservation_status(products_db, order["id"], "cancelled"))

    await eventually(settled, what="the cancelled order's reservation settled")
    await _drained(f"{namespace}products.order_created")
    await eventually(lambda: _stock_is(shop_api, product["id"], 10), what="stock of the cancelled order back")
    assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "cancelled"


async def test_multi_line_order_with_one_short_line_reserves_nothing(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, wire: WireTap) -> None:
    plenty = await create_product(shop_api, admin, stock=50)
    scarce = await create_product(shop_api, admin, stock=1)
    order = await place_order(shop_api, buyer, [(plenty["id"], 5), (scarce["id"], 2)])
    assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "rejected"
    assert await stock_of(shop_api, plenty["id"]) == 50
    assert await stock_of(shop_api, scarce["id"]) == 1
    rejected = await wire.wait_for(lambda m: m["type"] == "stock_rejected" and m["data"]["order_id"] == order["id"])
    assert rejected[0]["data"]["product_id"] == scarce["id"]


async def test_poison_message_is_dead_lettered_and_the_queue_keeps_flowing(
        shop_api: httpx.AsyncClient, admin: str, buyer: str, namespace: str) -> None:
    queue = f"{namespace}products.order_created"
    dlq_before = queue_depth(f"{queue}.dlq")[0]
    # Straight into the products queue (default exchange): no other consumer sees it.
    await publish_raw(namespace, "", queue, b'{"this is": "not a cloud event"', message_id="poison")
    product = await create_product(shop_api, admin, stock=3)
    order = await place_order(shop_api, buyer, [(product["id"], 1)])
    assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "confirmed"
    await eventually(lambda: _dlq_has(f"{queue}.dlq", dlq_before + 1), what="poison message in the DLQ")


async def _dlq_has(name: str, count: int) -> bool:
    return queue_depth(name)[0] >= count

