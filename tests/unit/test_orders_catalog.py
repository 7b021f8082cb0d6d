"""orders' catalog client: a product's name and price are reused briefly, and concurrent reads share one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from orders.catalog import CatalogClient, CatalogUnavailable


class Catalog:
    """A local stand-in for the products service's ``GET /products/{id}`` that counts requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.failing = False

    async def product(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        self.requests.append(pid)
        await asyncio.sleep(0.02)
        if self.failing:
            return web.Response(status=500)
        if pid == "missing":
            return web.Response(status=404)
        return web.json_response({"id": pid, "name": "Mug", "price": 1250, "currency": "EUR"})


@pytest.fixture
async def catalog() -> AsyncIterator[tuple[Catalog, str]]:
    fake = Catalog()
    app = web.Application()
    app.router.add_get("/products/{pid}", fake.product)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.allow_connect
async def test_concurrent_reads_share_one_request_and_answers_are_reused_while_fresh(
        catalog: tuple[Catalog, str]) -> None:
    fake, url = catalog
    client = CatalogClient(url, 2.0, cache_seconds=0.3)
    await client.start()
    try:
        results = await asyncio.gather(*(client.products(["p1"]) for _ in range(20)))
        assert all(r["p1"].price == 1250 for r in results)
        assert fake.requests == ["p1"]
        await client.products(["p1"])
        assert fake.requests == ["p1"]  # still fresh
        await asyncio.sleep(0.35)
        await client.products(["p1"])
        assert fake.requests == ["p1", "p1"]  # expired: asked again
    finally:
        await client.close()


@pytest.mark.allow_connect
async def test_missing_products_and_failures_are_not_remembered(catalog: tuple[Catalog, str]) -> None:
    fake, url = catalog
    client = CatalogClient(url, 2.0, cache_seconds=30)
    await client.start()
    try:
        assert await client.products(["missing"]) == {}
        assert await client.products(["missing"]) == {}
        assert fake.requests == ["missing", "missing"]
        fake.failing = True
        with pytest.raises(CatalogUnavailable):
            await client.products(["p2"])
        fake.failing = False
        assert (await client.products(["p2"]))["p2"].name == "Mug"
    finally:
        await client.close()


@pytest.mark.allow_connect
async def test_without_a_cache_every_order_asks(catalog: tuple[Catalog, str]) -> None:
    fake, url = catalog
    client = CatalogClient(url, 2.0, cache_seconds=0)
    await client.start()
    try:
        await client.products(["p1"])
        await client.products(["p1"])
        assert fake.requests == ["p1", "p1"]
    finally:
        await client.close()
