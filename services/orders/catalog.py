"""Names and prices for an order come from the products service over HTTP, never from the client.

HTTP rather than a local copy fed by ``product_updated``: products is the one source of truth, and a
copy would need a bootstrap and could serve a stale price. The cost: an unreachable catalog makes
placing an order answer 503. Answers are cached ``cache_seconds`` (default 1 s; 0: off) and concurrent
lookups of one product share one request; a missing product is not cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError

from shopkit.context import current_correlation_id

log = logging.getLogger("orders.catalog")


class CatalogProduct(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    price: int
    currency: str


class CatalogUnavailable(Exception):
    """The products service did not answer usefully."""


class CatalogClient:
    def __init__(self, base_url: str, timeout_seconds: float, cache_seconds: float = 0.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.cache_seconds = cache_seconds
        self._session: aiohttp.ClientSession | None = None
        # product id -> (when fetched, the lookup): a finished lookup is reused while fresh, a running
        # one by every concurrent caller.
        self._cache: dict[str, tuple[float, asyncio.Future[CatalogProduct | None]]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self.timeout, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _one(self, product_id: str) -> CatalogProduct | None:
        assert self._session is not None, "CatalogClient.start() was not called"
        headers = {"Accept": "application/json"}
        if cid := current_correlation_id():
            headers["X-Request-ID"] = cid
        try:
            async with self._session.get(f"{self.base_url}/products/{product_id}", headers=headers) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise CatalogUnavailable(f"products answered {resp.status} for {product_id}")
                body: Any = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CatalogUnavailable(str(exc) or type(exc).__name__) from exc
        try:
            return CatalogProduct.model_validate(body)
        except ValidationError as exc:
            raise CatalogUnavailable(f"unexpected product shape for {product_id}") from exc

    async def _cached(self, product_id: str) -> CatalogProduct | None:
        if self.cache_seconds <= 0:
            return await self._one(product_id)
        now = time.monotonic()
        hit = self._cache.get(product_id)
        if hit is not None and (not hit[1].done() or now - hit[0] < self.cache_seconds):
            return await asyncio.shield(hit[1])
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self.cache_seconds}
        lookup = asyncio.ensure_future(self._one(product_id))
        self._cache[product_id] = (now, lookup)
        try:
            product = await asyncio.shield(lookup)
        except BaseException:
            self._cache.pop(product_id, None)  # a failure is not remembered
            raise
        if product is None:
            self._cache.pop(product_id, None)
        return product

    async def products(self, product_ids: Iterable[str]) -> dict[str, CatalogProduct]:
        """The products that exist among ``product_ids`` (missing ones are absent from the result)."""
        ids = list(dict.fromkeys(product_ids))
        found = await asyncio.gather(*(self._cached(pid) for pid in ids))
        return {pid: p for pid, p in zip(ids, found, strict=True) if p is not None}
