"""Helpers for the alerts and analytics integration tests.

``alerts_ws_url_of`` is the one place the WebSocket address comes from: the gateway's
``/api/ws`` (use ``ws_url_for(shop.url("alerts"))`` to test the alerts service on its own).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from devtools.shop import LocalShop
from tests.support.api import bearer

Frame = dict[str, Any]


def ws_url_for(base_http_url: str) -> str:
    return base_http_url.replace("http://", "ws://", 1) + "/alerts/ws"


def alerts_ws_url_of(shop: LocalShop) -> str:
    """The public WebSocket: ``/api/ws`` on the gateway, which proxies it to ``/alerts/ws``."""
    return shop.url("gateway").replace("http://", "ws://", 1) + "/api/ws"


class Feed:
    """A connected socket whose frames are collected in the background, to wait on and to inspect."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[Frame] = []
        self._changed = asyncio.Condition()
        self.closed_code: int | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                async with self._changed:
                    self.frames.append(json.loads(raw))
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed_code = self.conn.close_code
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 15.0) -> Frame:
        deadline = time.monotonic() + timeout
        seen = 0
        async with self._changed:
            while True:
                for frame in self.frames[seen:]:
                    if predicate(frame):
                        return frame
                seen = len(self.frames)
                left = deadline - time.monotonic()
                if left <= 0 or self._task.done():
                    raise AssertionError(f"no matching frame within {timeout}s; got {self.frames}")
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    def about_order(self, order_id: str) -> list[Frame]:
        return [f for f in self.frames if f["type"] in ("order_status", "alert")
                and f["data"].get("order_id", f["data"].get("data", {}).get("order_id")) == order_id]

    async def close(self) -> None:
        await self.conn.close()
        await self._task


@asynccontextmanager
async def feed(url: str, token: str, *, via: str = "query") -> AsyncIterator[Feed]:
    """Connect with the token in the query (``via="query"``) or the Authorization header; wait for ``connected``."""
    if via == "query":
        conn = await websockets.connect(f"{url}?access_token={token}", open_timeout=10)
    else:
        conn = await websockets.connect(url, additional_headers=bearer(token), open_timeout=10)
    f = Feed(conn)
    try:
        await f.wait_for(lambda fr: fr["type"] == "connected", timeout=10)
        yield f
    finally:
        await f.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def create_product(api: httpx.AsyncClient, admin_token: str, *, stock: int, threshold: int = 2,
                         price: int = 1250, currency: str = "EUR", name: str | None = None) -> dict[str, Any]:
    sku = f"AL-{uuid.uuid4().hex[:10]}"
    r = await api.post("/products", headers=bearer(admin_token), json={
        "sku": sku, "name": name or f"Alert test {sku}", "description": "", "category": "tests",
        "price": price, "currency": currency, "stock": stock, "low_stock_threshold": threshold,
    })
    assert r.status_code == 201, r.text
    return dict(r.json())


async def place_order(api: httpx.AsyncClient, token: str, lines: list[tuple[str, int]]) -> dict[str, Any]:
    r = await api.post("/orders", headers=bearer(token),
                       json={"items": [{"product_id": pid, "quantity": q} for pid, q in lines]})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def order_status(api: httpx.AsyncClient, token: str, order_id: str) -> str:
    r = await api.get(f"/orders/{order_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return str(r.json()["status"])
