"""Readiness reflects only what a service cannot work without (issue 12).

The outbox exists so that a RabbitMQ outage does not stop the API: products, orders, alerts and
analytics start and stay ready without RabbitMQ, products also without Redis (its cache falls back to
MongoDB); their ``/health/ready`` says ``degraded`` and names what is down. The shared broker is never
touched: these services get a RabbitMQ URL on a local port where nothing listens, and (for the
recovery) a TCP relay to the real broker is opened on that port later.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from devtools.procs import Proc, free_port
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.saga import auth, unique_sku
from tests.support.services import ON_BUS

SERVICES = ON_BUS


def start(name: str, shop: LocalShop, namespace: str, env: dict[str, str]) -> tuple[str, Proc]:
    port = free_port()
    proc = Proc(
        name=f"{name}-nobroker",
        argv=[sys.executable, "-m", name],
        env={**shop.common_env(), "MICROSHOP_NAMESPACE": namespace, "MICROSHOP_PORT": str(port),
             "MICROSHOP_MONGO_DATABASE": f"{namespace.replace('.', '_')}{name}_nobroker", **env},
        ready_url=f"http://127.0.0.1:{port}/health/ready",
    ).start()
    return f"http://127.0.0.1:{port}", proc


@pytest.fixture
def dead_broker_port() -> int:
    return free_port()


@pytest.fixture
def without_broker(shop: LocalShop, namespace: str, dead_broker_port: int) -> Iterator[dict[str, tuple[str, Proc]]]:
    """The four event-using services, RabbitMQ unreachable; products also without Redis."""
    broker = {"MICROSHOP_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{dead_broker_port}/"}
    no_redis = {"MICROSHOP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "MICROSHOP_SEED_DEMO": "false"}
    started = {name: start(name, shop, namespace, {**broker, **(no_redis if name == "products" else {})})
               for name in SERVICES}
    try:
        for _, proc in started.values():
            proc.wait_ready(60)  # raises unless /health/ready answers 200
        yield started
    finally:
        for _, proc in started.values():
            proc.stop()


@contextlib.asynccontextmanager
async def relay(port: int, target: int) -> AsyncIterator[None]:
    """A TCP relay 127.0.0.1:port → 127.0.0.1:target: RabbitMQ 'comes back' on the dead port.

    Its connections are cut on exit (before the services stop, which then need no broker to close).
    """
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        writers.extend((writer, up_writer))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def wait_for_status(client: httpx.AsyncClient, status: str, timeout: float = 30.0) -> dict[str, Any]:
    body: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while True:
            body = (await client.get("/health/ready")).json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.2)


async def test_services_stay_ready_without_rabbitmq_and_products_without_redis(
    without_broker: dict[str, tuple[str, Proc]], shop: LocalShop, mongo_url: str, namespace: str,
    dead_broker_port: int,
) -> None:
    for name, (url, _) in without_broker.items():
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            r = await client.get("/health/ready")
            assert r.status_code == 200, (name, r.text)
            body = r.json()
            expected = ["broker", "redis"] if name == "products" else ["broker"]
            assert body["status"] == "degraded" and body["degraded"] == expected, (name, body)
            assert body["checks"]["mongo"] == {"status": "up", "required": True}, (name, body)
            assert body["checks"]["broker"] == {"status": "down", "required": False}, (name, body)

    # products serves reads and writes: the catalog from MongoDB, the event into the outbox.
    async with httpx.AsyncClient(base_url=shop.url("customers"), timeout=10) as customers:
        r = await customers.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
        admin = r.json()["access_token"]
    url, _ = without_broker["products"]
    async with httpx.AsyncClient(base_url=url, timeout=10) as products:
        sku = unique_sku("NOBROKER")
        r = await products.post("/products", headers=auth(admin), json={
            "sku": sku, "name": "Outage", "category": "test", "price": 100, "currency": "EUR", "stock": 3})
        assert r.status_code == 201, r.text
        product = r.json()
        for _ in range(2):  # twice: a miss, then (no Redis) a miss again, both from MongoDB
            r = await products.get(f"/products/{product['id']}")
            assert r.status_code == 200 and r.json()["sku"] == sku
        assert (await products.get("/products")).status_code == 200

        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
        outbox = client[f"{namespace.replace('.', '_')}products_nobroker"]["outbox"]
        try:
            assert await outbox.count_documents({"sent": False}) >= 1  # held until RabbitMQ is back
            # RabbitMQ comes back on that port: the consumers start and the outbox drains.
            async with relay(dead_broker_port, 5672):
                body = await wait_for_status(products, "degraded", 5)  # Redis is still away
                async with asyncio.timeout(40):
                    while body["checks"]["broker"]["status"] != "up" or await outbox.count_documents(
                            {"sent": False}):
                        await asyncio.sleep(0.3)
                        body = (await products.get("/health/ready")).json()
                assert body["degraded"] == ["redis"]
        finally:
            await client.close()

