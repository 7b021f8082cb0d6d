"""End-to-end order saga throughput: ``uv run python benchmarks/saga_throughput.py [orders] [concurrency]``.

Starts its own shop (customers, products, orders, own SecantusDB and namespace), places N orders of
quantity 1 against one hot product, then spread over 20 products, and prints placement rate (HTTP 201s
per second), settlement rate (orders confirmed or rejected per second, end to end through both
services and the broker) and the ratio between the two scenarios (reservations of one product are
serialised per process; different products reserve concurrently).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from devtools.broker_cleanup import delete_namespace
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop, ensure_private_key


async def run(shop: LocalShop, orders: int, concurrency: int, products: int) -> float:
    """Place ``orders`` orders spread over ``products`` products; returns the settled rate (orders/s)."""
    async with httpx.AsyncClient(timeout=30) as http:
        login = await http.post(f"{shop.url('customers')}/auth/login",
                                json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        ids = []
        for _ in range(products):
            product = (await http.post(f"{shop.url('products')}/products", headers=headers, json={
                "sku": f"BENCH-{uuid.uuid4().hex[:8]}", "name": "Bench", "category": "bench", "price": 100,
                "currency": "EUR", "stock": orders // 2 // products, "low_stock_threshold": 0})).json()
            ids.append(product["id"])
        limit = asyncio.Semaphore(concurrency)

        async def place(i: int) -> None:
            async with limit:
                r = await http.post(f"{shop.url('orders')}/orders", headers=headers,
                                    json={"items": [{"product_id": ids[i % products], "quantity": 1}]})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(place(i) for i in range(orders)))
        placed = time.perf_counter() - start
        assert shop.mongo is not None
        client: AsyncMongoClient[Any] = AsyncMongoClient(shop.mongo)
        db = client["orders"]
        # Polling another process's database: there is no event to wait on here.
        while await db["orders"].count_documents({"status": "pending"}) > 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        settled = time.perf_counter() - start
        confirmed = await db["orders"].count_documents({"status": "confirmed"})
        await db["orders"].delete_many({})  # the next scenario counts only its own orders
        await client.close()
    print(f"orders: {orders} over {products} product(s) (stock {orders // 2} in all), concurrency {concurrency}")
    print(f"  placed   {orders / placed:8.1f} orders/s  ({placed:.2f} s)")
    print(f"  settled  {orders / settled:8.1f} orders/s  ({settled:.2f} s, {confirmed} confirmed)")
    print(f"  ratio settled/placed: {placed / settled:.2f}")
    return orders / settled


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    with tempfile.TemporaryDirectory() as tmp:
        shop = LocalShop(key_file=ensure_private_key(Path(tmp) / "key.pem"), namespace=f"bench{uuid.uuid4().hex[:6]}.",
                         services=["customers", "products", "orders"], out=None,
                         env={"MICROSHOP_LOG_LEVEL": "WARNING"})
        try:
            shop.start(timeout=90)
            hot = asyncio.run(run(shop, orders, concurrency, 1))
            spread = asyncio.run(run(shop, orders, concurrency, 20))
            print(f"settled rate, 20 products vs one hot product: {spread / hot:.2f}x")
        finally:
            shop.stop()
            delete_namespace("amqp://guest:guest@127.0.0.1:5672/", shop.namespace)


if __name__ == "__main__":
    main()
