"""Helpers for the products / orders / saga integration tests (their fixtures: tests/integration/conftest.py).

``public_client`` (behind the ``shop_api`` fixture) talks to the public API through the gateway
when the shop runs one, and routes by path prefix straight to the owning service otherwise, so
the same tests run before and after the gateway exists. ``WireTap`` binds its own temporary
queue to the session's exchanges to watch events on the wire.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from devtools.shop import LocalShop
from shopkit.contracts.events import CATALOGUE, OrderCreated, OrderLine
from shopkit.events import CloudEvent, new_event
from tests.support.api import api_client

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TERMINAL = {"confirmed", "rejected", "cancelled"}
ROUTES = {"/auth": "customers", "/customers": "customers", "/products": "products", "/orders": "orders"}


async def declare_topic(channel: aio_pika.abc.AbstractChannel, namespace: str, name: str
                        ) -> aio_pika.abc.AbstractExchange:
    """One of the shop's topic exchanges, declared exactly as the services declare it (shopkit.messaging.bus)."""
    return await channel.declare_exchange(namespace + name, aio_pika.ExchangeType.TOPIC, durable=True,
                                          arguments={"alternate-exchange": f"{namespace}{name}.unroutable"})


def via_gateway(shop: LocalShop) -> bool:
    proc = shop.procs.get("gateway")
    return proc is not None and proc.running


class _PrefixRouter(httpx.AsyncBaseTransport):
    """For a shop started without its gateway: ``/products/...`` goes to the products service, and so on."""

    def __init__(self, shop: LocalShop) -> None:
        self.shop = shop
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        service = next((svc for prefix, svc in ROUTES.items() if path.startswith(prefix)), None)
        assert service is not None, f"no service serves {path}"
        request.url = request.url.copy_with(host="127.0.0.1", port=self.shop.port(service))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def public_client(shop: LocalShop) -> httpx.AsyncClient:
    if via_gateway(shop):
        return api_client(shop, timeout=30.0)
    return httpx.AsyncClient(base_url="http://shop.invalid", transport=_PrefixRouter(shop), timeout=30.0)


async def login(client: httpx.AsyncClient, email: str, password: str) -> str:
    r = await client.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def new_customer(client: httpx.AsyncClient) -> str:
    email = f"saga-{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post("/auth/register", json={"email": email, "password": "correct horse battery",
                                                  "name": "Saga Tester"})
    assert r.status_code == 201, r.text
    return await login(client, email, "correct horse battery")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique_sku(prefix: str = "T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_product(client: httpx.AsyncClient, admin_token: str, **fields: Any) -> dict[str, Any]:
    body = {"sku": unique_sku(), "name": "Test product", "description": "", "category": "tests",
            "price": 1000, "currency": "EUR", "stock": 10, "low_stock_threshold": 2, **fields}
    r = await client.post("/products", json=body, headers=auth(admin_token))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def stock_of(client: httpx.AsyncClient, product_id: str) -> int:
    r = await client.get(f"/products/{product_id}")
    assert r.status_code == 200, r.text
    return int(r.json()["stock"])


async def place_order(client: httpx.AsyncClient, token: str, lines: list[tuple[str, int]],
                      request_id: str | None = None) -> dict[str, Any]:
    headers = auth(token)
    if request_id:
        headers["X-Request-ID"] = request_id
    r = await client.post("/orders", json={"items": [{"product_id": p, "quantity": q} for p, q in lines]},
                          headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def eventually(check: Callable[[], Awaitable[Any] | Any], timeout: float = 20.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Poll ``check`` (a coroutine function, or a plain one) until it returns something truthy; fail with the last
    value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


async def wait_for_status(client: httpx.AsyncClient, token: str, order_id: str, statuses: set[str] = TERMINAL,
                          timeout: float = 30.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/orders/{order_id}", headers=auth(token))
        assert r.status_code == 200, r.text
        body = dict(r.json())
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, timeout, 0.05, f"order {order_id} in {statuses}")
    return result


@dataclass
class WireTap:
    """A temporary exclusive queue bound (``#``) to the session's order and product exchanges (or ``exchanges``)."""

    namespace: str
    exchanges: tuple[str, ...] = ("order_exchange", "product_exchange")
    messages: list[dict[str, Any]] = field(default_factory=list)
    connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> WireTap:
        self.connection = await aio_pika.connect_robust(AMQP_URL)
        channel = await self.connection.channel()
        queue = await channel.declare_queue(f"{self.namespace}tap.{uuid.uuid4().hex[:8]}", exclusive=True,
                                            auto_delete=True)
        for name in self.exchanges:
            exchange = await declare_topic(channel, self.namespace, name)
            await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            self.messages.append(json.loads(message.body))
        except ValueError:
            self.messages.append({"type": "<not json>", "raw": message.body})

    def of_order(self, order_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("data", {}).get("order_id") == order_id]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], count: int = 1,
                       timeout: float = 20.0) -> list[dict[str, Any]]:
        async def check() -> list[dict[str, Any]] | None:
            found = [m for m in self.messages if predicate(m)]
            return found if len(found) >= count else None

        result: list[dict[str, Any]] = await eventually(check, timeout, 0.05, f"{count} matching event(s)")
        return result

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


async def publish_raw(namespace: str, exchange: str, routing_key: str, body: bytes,
                      message_id: str | None = None) -> None:
    """Publish straight to the broker (as a misbehaving or duplicating publisher would)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = (channel.default_exchange if exchange == "" else
                  await declare_topic(channel, namespace, exchange))
        await target.publish(aio_pika.Message(body, message_id=message_id, content_type="application/json",
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key=routing_key)


def cloud_event(type_: str, data: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or uuid.uuid4().hex, "source": "/tests", "type": type_, "specversion": "1.0",
            "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
            "correlationid": f"test-{uuid.uuid4().hex[:8]}", "data": data}


async def publish_event(namespace: str, event: dict[str, Any]) -> None:
    """Publish ``event`` (a CloudEvent as JSON) as the shop would: its exchange, its routing key."""
    model = CATALOGUE[event["type"]]
    await publish_raw(namespace, model.EXCHANGE, model.routing_key(event["data"]), json.dumps(event).encode(),
                      event["id"])


def queue_depth(name: str) -> tuple[int, int]:
    """(ready, unacked) of a queue, from rabbitmqctl."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages_ready",
                          "messages_unacknowledged"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == name:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {name} does not exist")


def close_broker_connections(pids: set[int]) -> int:
    """Force-close (CONNECTION_FORCED) the AMQP connections of these processes only; others are untouched."""
    ss = subprocess.run(["ss", "-tnpH", "state", "established", "( dport = :5672 )"], capture_output=True,
                        text=True, check=True).stdout
    ports = set()
    for line in ss.splitlines():
        m = re.search(r":(\d+)\s+\S+:5672\s.*pid=(\d+)", line)
        if m and int(m.group(2)) in pids:
            ports.add(int(m.group(1)))
    conns = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "peer_port"], capture_output=True,
                           text=True, check=True).stdout
    closed = 0
    for line in conns.splitlines():
        pid, _, port = line.rpartition("\t")
        if port.strip().isdigit() and int(port) in ports:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "microshop test: broker dropped"],
                           check=True, capture_output=True)
            closed += 1
    return closed


async def dead_letter_for_alerts(namespace: str, customer_id: str) -> CloudEvent:
    """A valid order_created the alerts consumer "failed" on: put straight into ``alerts.order_created.dlq``."""
    event = new_event(OrderCreated(order_id=uuid.uuid4().hex[:24], customer_id=customer_id, total=500, currency="EUR",
                                   items=(OrderLine(product_id="p1", name="Thing", unit_price=500, quantity=1),)),
                      "/tests")
    await publish_raw(namespace, "", f"{namespace}alerts.order_created.dlq", event.model_dump_json().encode(),
                      event.id)
    return event
