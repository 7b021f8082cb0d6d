"""Chaos: the shop's dependencies fail under it, one after the other, while customers keep ordering.

Its own shop (customers, products, orders, gateway) with its own SecantusDB (on disk, so a restart
keeps the data), its own redis-server and its own namespace on the shared RabbitMQ (whose
connections from this shop are force-closed; the broker itself is never restarted). In turn:

1. the RabbitMQ connections of products and orders are closed during a burst of orders;
2. products is SIGKILLed during a burst and restarted;
3. Redis is stopped, then started again;
4. SecantusDB is stopped, then started again on the same port and storage.

While a dependency is gone the API answers, within a bound, either normally or 503 with
``Retry-After`` — never a 500, never a hang. Afterwards every accepted order reaches a terminal
status, the stock is exactly what the confirmed orders left, and nothing exists twice.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from devtools.procs import Proc, free_port, wait_until
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.api import api_client
from tests.support.saga import (
    TERMINAL,
    auth,
    close_broker_connections,
    create_product,
    eventually,
    login,
    new_customer,
    stock_of,
)

REQUEST_BOUND_SECONDS = 15.0  # a request that takes longer than this is a hang
STOCK = 1000


@dataclass
class Chaos:
    shop: LocalShop
    redis: Proc
    client: httpx.AsyncClient
    admin: str = ""
    buyer: str = ""
    product: dict[str, Any] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # order id -> quantity
    answers: list[tuple[str, int, str | None]] = field(default_factory=list)  # (what, status, Retry-After)

    async def call(self, what: str, request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response | None:
        """One request; its status is recorded; a hang (no answer within the bound) fails the test."""
        started = time.monotonic()
        try:
            r = await asyncio.wait_for(request(), REQUEST_BOUND_SECONDS)
        except TimeoutError:
            raise AssertionError(f"{what}: no answer within {REQUEST_BOUND_SECONDS}s") from None
        except httpx.TransportError as exc:
            raise AssertionError(f"{what}: the gateway dropped the connection ({exc!r})") from None
        assert time.monotonic() - started < REQUEST_BOUND_SECONDS
        self.answers.append((what, r.status_code, r.headers.get("retry-after")))
        return r

    async def order(self, quantity: int = 1, what: str = "order") -> httpx.Response | None:
        r = await self.call(what, lambda: self.client.post(
            "/orders", json={"items": [{"product_id": self.product["id"], "quantity": quantity}]},
            headers=auth(self.buyer)))
        if r is not None and r.status_code == 201:
            self.accepted[r.json()["id"]] = quantity
        return r

    def refusals(self) -> list[tuple[str, int, str | None]]:
        """Answers that break the rule: anything 5xx other than a 503 with Retry-After."""
        return [a for a in self.answers if a[1] >= 500 and not (a[1] == 503 and a[2])]


def redis_proc(port: int) -> Proc:
    return Proc(name="redis", argv=["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"])


@pytest.fixture(scope="module")
def chaos_shop(key_file: Path, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[LocalShop, Proc]]:
    redis_port = free_port()
    redis = redis_proc(redis_port).start()
    assert wait_until(lambda: _port_open(redis_port), 10), "redis-server did not start"
    shop = LocalShop(
        key_file=key_file, namespace=f"{namespace}chaos{uuid.uuid4().hex[:6]}.", out=None,
        mongo_storage=str(tmp_path_factory.mktemp("chaos-db") / "data"),
        services=["customers", "products", "orders", "gateway"],
        env={"MICROSHOP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "MICROSHOP_RATE_LIMIT_REQUESTS": "1000000",
             # One buyer keeps ordering one product: no outstanding cap in the way.
             "MICROSHOP_ORDER_MAX_OUTSTANDING_PER_PRODUCT": "0", "MICROSHOP_LOG_LEVEL": "INFO"},
    )
    try:
        shop.start(timeout=90)
        yield shop, redis
    except BaseException:
        for name, proc in shop.procs.items():
            print(f"--- {name}", *proc.lines[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        shop.stop()
        redis.stop()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
async def chaos(chaos_shop: tuple[LocalShop, Proc]) -> AsyncIterator[Chaos]:
    shop, redis = chaos_shop
    async with api_client(shop, timeout=30.0) as client:
        state = Chaos(shop, redis, client)
        state.admin = await login(client, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
        state.buyer = await new_customer(client)
        state.product = await create_product(client, state.admin, stock=STOCK, low_stock_threshold=0)
        yield state


async def test_broker_connections_force_closed_during_a_burst_of_orders(chaos: Chaos) -> None:
    pids = {pid for name in ("products", "orders") if (pid := chaos.shop.procs[name].pid) is not None}

    async def drop_soon() -> int:
        await asyncio.sleep(0.05)
        return await asyncio.to_thread(close_broker_connections, pids)

    results = await asyncio.gather(drop_soon(), *(chaos.order(1, "order during broker drop") for _ in range(30)))
    assert results[0] >= 2, "no broker connection was closed"
    # The outbox means a broker outage never stops placing orders.
    assert [r.status_code for r in results[1:] if r is not None] == [201] * 30


async def test_a_service_sigkilled_during_a_burst_and_restarted(chaos: Chaos) -> None:
    async def kill_soon() -> None:
        await asyncio.sleep(0.1)
        chaos.shop.kill_service("products")

    answers = await asyncio.gather(kill_soon(), *(chaos.order(2, "order while products is killed")
                                                  for _ in range(20)))
    # Without products, orders cannot price an order: 503 catalog-unavailable with Retry-After.
    assert all(r is not None and r.status_code in (201, 503) for r in answers[1:])
    for _ in range(3):
        await chaos.call("product while products is down",
                         lambda: chaos.client.get(f"/products/{chaos.product['id']}"))
    chaos.shop.start_service("products")
    r = await chaos.order(1, "order after products restarted")
    assert r is not None and r.status_code == 201


async def test_redis_stopped_and_started(chaos: Chaos) -> None:
    chaos.redis.stop()
    try:
        for _ in range(3):
            r = await chaos.call("product read without redis",
                                 lambda: chaos.client.get(f"/products/{chaos.product['id']}"))
            assert r is not None and r.status_code in (200, 503), r.text
            await chaos.order(1, "order without redis")
    finally:
        chaos.redis.start()
        port = int(chaos.redis.argv[chaos.redis.argv.index("--port") + 1])
        assert wait_until(lambda: _port_open(port), 10)
    r = await chaos.order(1, "order after redis is back")
    assert r is not None and r.status_code == 201, r.text


async def test_the_database_stopped_and_restarted(chaos: Chaos) -> None:
    mongo = chaos.shop.procs["mongo"]
    mongo.stop()
    try:
        read = await chaos.call("product read without the database",
                                lambda: chaos.client.get(f"/products/{chaos.product['id']}"))
        placed = await chaos.order(1, "order without the database")
        assert read is not None and placed is not None
        assert placed.status_code == 503 and placed.headers.get("retry-after"), placed.text
    finally:
        mongo.start()
        assert wait_until(lambda: _port_open(int(mongo.argv[mongo.argv.index("--port") + 1])), 30)

    async def ordering_again() -> bool:
        r = await chaos.order(1, "order after the database is back")
        return r is not None and r.status_code == 201

    await eventually(ordering_again, timeout=30, interval=0.5, what="orders accepted again")


async def test_afterwards_every_order_is_settled_stock_exact_nothing_twice_and_no_500(chaos: Chaos) -> None:
    assert chaos.accepted, "no order was accepted"

    async def all_settled() -> dict[str, str] | None:
        statuses = {}
        for order_id in chaos.accepted:
            r = await chaos.client.get(f"/orders/{order_id}", headers=auth(chaos.admin))
            assert r.status_code == 200, r.text
            statuses[order_id] = r.json()["status"]
        return statuses if set(statuses.values()) <= TERMINAL else None

    statuses = await eventually(all_settled, timeout=60, interval=0.5, what="every accepted order settled")
    confirmed = sum(q for order_id, q in chaos.accepted.items() if statuses[order_id] == "confirmed")
    assert set(statuses.values()) == {"confirmed"}  # plenty of stock: nothing is rejected
    assert await stock_of(chaos.client, chaos.product["id"]) == STOCK - confirmed

    assert chaos.shop.mongo is not None
    db: AsyncMongoClient[Any] = AsyncMongoClient(chaos.shop.mongo, tz_aware=True)
    try:
        mine = await db["orders"]["orders"].count_documents({"items.product_id": chaos.product["id"]})
        assert mine == len(chaos.accepted)  # no order twice (and none we were not told about)
        reservations = await db["products"]["reservations"].count_documents({"_id": {"$in": list(chaos.accepted)}})
        assert reservations == len(chaos.accepted)
    finally:
        await db.close()
    assert chaos.refusals() == [], "5xx other than 503 + Retry-After while dependencies were away"
    assert all(proc.running for name, proc in chaos.shop.procs.items()), "a process died"
