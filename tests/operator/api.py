"""A plain-HTTP Kubernetes client for the tests: the emulator directly, a real cluster via ``kubectl proxy``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")

SHOPS = "/apis/microshop.dev/v1alpha1"
APPS = "/apis/apps/v1"
CORE = "/api/v1"


class ApiFailure(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = "application/json") -> Any:
        async with self.session.request(method, self.base_url + path, json=body,
                                        headers={"Content-Type": content_type}) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400:
                raise ApiFailure(resp.status, data)
            return data

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(await self.request("GET", path))
        except ApiFailure as exc:
            if exc.status == 404:
                return None
            raise

    async def merge(self, path: str, patch: dict[str, Any]) -> Any:
        return await self.request("PATCH", path, patch, "application/merge-patch+json")

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        return await self.request("POST", path, body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def items(self, path: str, selector: str | None = None) -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        return list((await self.request("GET", path + query)).get("items") or [])


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str,
                     interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except (AssertionError, KeyError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}"[:3000])
        await asyncio.sleep(interval)
