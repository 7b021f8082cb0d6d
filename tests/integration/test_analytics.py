"""Analytics service: the dashboard equals what happened, to the minor unit, and replays change nothing.

Counts are global to a shop, so these tests run their own small shop (own namespace inside
the session's, own databases on the session's SecantusDB): customers, products, orders,
analytics and the gateway. A second small shop without analytics proves the shop works
without it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.alerts import create_product, eventually, order_status, place_order
from tests.support.api import api_client, bearer, register_and_login
from tests.support.saga import declare_topic
from tests.support.shops import running, shop_factory

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGES = ("order_exchange", "product_exchange", "alert_exchange")
DEADLINE = 30.0


def own_shop(mongo_url: str, namespace: str, key_file: Path, services: list[str],
             env: dict[str, str] | None = None) -> LocalShop:
    suffix = uuid.uuid4().hex[:6]
    return shop_factory()(
        key_file=key_file, mongo=mongo_url, namespace=namespace, out=None, services=services,
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000", **(env or {})},
        # Own databases: a shared orders outbox would be drained by the session shop's relay too.
        service_env={s: {"MICROSHOP_MONGO_DATABASE": f"{s}_{suffix}"} for s in services},
    )


@pytest.fixture(scope="module")
def analytics_shop(mongo_url: str, namespace: str, key_file: Path) -> Iterator[LocalShop]:
    local = own_shop(mongo_url, f"{namespace}an.", key_file,
                     ["customers", "products", "orders", "analytics", "gateway"])
    with running(local):
        yield local


@pytest.fixture
async def an_api(analytics_shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(analytics_shop) as client:
        yield client


async def admin_login(api: httpx.AsyncClient) -> str:
    r = await api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


class Recorder:
    """Every event on the shop's exchanges, as published (to publish them all again later)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[tuple[str, bytes, str | None]] = []
        self.connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect_robust(AMQP_URL)
        channel = await self.connection.channel()
        queue = await channel.declare_queue(f"{self.namespace}tap.{uuid.uuid4().hex[:8]}", exclusive=True,
                                            auto_delete=True)
        for name in EXCHANGES:
            ex = await declare_topic(channel, self.namespace, name)
            await queue.bind(ex, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self.events.append((message.exchange, message.body, message.message_id))

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body, _ in self.events]

    async def publish_all_again(self) -> int:
        """Stops recording first (the tap would hear its own replays), then publishes what it recorded."""
        await self.close()
        events = list(self.events)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for exchange_name, body, message_id in events:
                ex = await channel.get_exchange(exchange_name)
                await ex.publish(aio_pika.Message(body, message_id=message_id, content_type="application/json",
                                                  delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                 routing_key=json.loads(body)["type"])
        return len(events)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


async def dashboard(api: httpx.AsyncClient, token: str) -> dict[str, Any]:
    r = await api.get("/analytics/dashboard", headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def revenue_by_currency(board: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in board["revenue_by_day"]:
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["amount"]
    return totals


def summary(board: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders_by_status": board["orders_by_status"],
        "revenue": revenue_by_currency(board),
        "top": [(p["product_id"], p["quantity"]) for p in board["top_products"]],
        "low": sorted((p["product_id"], p["stock"]) for p in board["low_stock"]),
        "ratio": board["confirmed_ratio"],
    }


async def settled(api: httpx.AsyncClient, token: str, order_id: str, want: str) -> None:
    async def reached() -> bool:
        return await order_status(api, token, order_id) == want

    await eventually(reached, DEADLINE)


async def test_dashboard_matches_a_scripted_run_and_replaying_every_event_changes_nothing(
        an_api: httpx.AsyncClient, analytics_shop: LocalShop) -> None:
    api = an_api
    admin = await admin_login(api)
    tap = Recorder(analytics_shop.namespace)
    await tap.start()
    try:
        cust = (await register_and_login(api))["access_token"]
        r = await api.get("/analytics/dashboard", headers=bearer(cust))
        assert r.status_code == 403
        p1 = await create_product(api, admin, stock=10, threshold=3, price=1250, currency="EUR", name="Mug")
        p2 = await create_product(api, admin, stock=3, threshold=0, price=999, currency="EUR", name="Kettle")
        p3 = await create_product(api, admin, stock=100, threshold=5, price=500, currency="USD", name="Tee")

        async def order(lines: list[tuple[dict[str, Any], int]], outcome: str) -> str:
            placed = await place_order(api, cust, [(p["id"], q) for p, q in lines])
            await settled(api, cust, placed["id"], outcome)
            return str(placed["id"])

        await order([(p1, 2)], "confirmed")                      # P1 10 → 8
        await order([(p1, 3), (p2, 1)], "confirmed")             # P1 → 5, P2 → 2
        await order([(p2, 5)], "rejected")
        await order([(p3, 4)], "confirmed")                      # USD
        o5 = await order([(p1, 1)], "confirmed")                 # P1 → 4, then cancelled: back to 5
        r = await api.post(f"/orders/{o5}/cancel", headers=bearer(cust))
        assert r.status_code == 200, r.text
        await settled(api, cust, o5, "cancelled")
        await order([(p1, 3)], "confirmed")                      # P1 5 → 2 ≤ 3: stock_low
        o7 = await order([(p3, 1)], "confirmed")
        r = await api.post(f"/orders/{o7}/status", headers=bearer(admin), json={"status": "shipped"})
        assert r.status_code == 200, r.text
        await settled(api, cust, o7, "shipped")
        await order([(p2, 3)], "rejected")

        expected = {
            "orders_by_status": {"pending": 0, "confirmed": 4, "rejected": 2, "cancelled": 1, "shipped": 1,
                                 "delivered": 0},
            "revenue": {"EUR": 2 * 1250 + 3 * 1250 + 999 + 3 * 1250, "USD": 4 * 500 + 500},
            "top": [(p1["id"], 8), (p3["id"], 5), (p2["id"], 1)],
            "low": [(p1["id"], 2)],
            "ratio": 0.75,  # 6 confirmed by the saga (one cancelled later) of 8 decided
        }

        async def matches(want: dict[str, Any]) -> bool:
            return summary(await dashboard(api, admin)) == want

        await eventually(lambda: matches(expected), DEADLINE)
        board = await dashboard(api, admin)
        assert set(board) == {"orders_by_status", "revenue_by_day", "top_products", "low_stock", "confirmed_ratio"}
        today = datetime.now(UTC).date()
        assert {row["day"] for row in board["revenue_by_day"]} <= {today.isoformat(),
                                                                   (today - timedelta(days=1)).isoformat()}
        assert [p["name"] for p in board["top_products"]] == ["Mug", "Tee", "Kettle"]
        assert board["low_stock"] == [{"product_id": p1["id"], "name": "Mug", "stock": 2}]

        # Every event again, as a crashed publisher or a broker redelivery would send them.
        captured = tap.types()
        assert {"order_created", "order_updated", "product_updated", "stock_low"} <= set(captured)
        assert await tap.publish_all_again() == len(captured)
        # A sentinel after the replays on every queue analytics reads: once it shows, the replays were handled.
        p4 = await create_product(api, admin, stock=1, threshold=0, price=100, currency="EUR", name="Lamp")
        await order([(p4, 1)], "confirmed")
        after = {
            **expected,
            "orders_by_status": {**expected["orders_by_status"], "confirmed": 5},
            "revenue": {"EUR": expected["revenue"]["EUR"] + 100, "USD": expected["revenue"]["USD"]},
            "top": [*expected["top"], (p4["id"], 1)],
            "low": sorted([(p1["id"], 2), (p4["id"], 0)]),
            "ratio": round(7 / 9, 4),
        }
        await eventually(lambda: matches(after), DEADLINE)
    finally:
        await tap.close()


@pytest.fixture(scope="module")
def shop_without_analytics(mongo_url: str, namespace: str, key_file: Path) -> Iterator[LocalShop]:
    local = own_shop(mongo_url, f"{namespace}na.", key_file,
                     ["customers", "products", "orders", "alerts", "gateway"],
                     env={"MICROSHOP_ANALYTICS_ENABLED": "false"})
    try:
        local.start(timeout=90)
        yield local
    finally:
        local.stop()


async def test_shop_without_analytics_is_healthy_and_orders_flow(shop_without_analytics: LocalShop) -> None:
    async with api_client(shop_without_analytics) as api:
        r = await api.get("/health")
        assert r.status_code == 200, r.text
        health = r.json()
        assert health["status"] == "ok" and "analytics-service" not in health["services"], health
        assert health["services"].get("orders-service") == "running"
        admin = await admin_login(api)
        cust = (await register_and_login(api))["access_token"]
        product = await create_product(api, admin, stock=5, threshold=1)
        placed = await place_order(api, cust, [(product["id"], 2)])
        await settled(api, cust, placed["id"], "confirmed")
        r = await api.get("/analytics/dashboard", headers=bearer(admin))
        assert r.status_code == 404
