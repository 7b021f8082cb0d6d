"""Redis read-through cache for product reads, invalidated by generation counters.

A cached entry's key carries the generation that was current *before* the database was
read; every write bumps the generation *after* it commits. A reader that raced a write
therefore stores its (possibly old) value under a generation nobody asks for any more,
and the first read after a write always misses: no stale read after an update.

One generation per product (``gen:<id>``) guards single-product reads; one global
generation (``gen:list``) guards list pages, because any stock or price change can move
a product in or out of a page. If Redis is away, reads fall through to MongoDB.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("products.cache")

LIST = "list"
# Generation keys outlive every entry keyed by them (entries live at most the TTL, capped at a day).
GENERATION_TTL_SECONDS = 7 * 86400

Loader = Callable[[], Awaitable[Any]]


def _text(value: str | bytes | None) -> str:
    if value is None:
        return "0"
    return value.decode() if isinstance(value, bytes) else value


class ProductCache:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.prefix = f"{prefix}products:cache:"
        self.ttl = ttl_seconds

    def _gen_key(self, scope: str) -> str:
        return f"{self.prefix}gen:{scope}"

    async def _read(self, scope: str, key: str, load: Loader) -> Any:
        try:
            gen = await self.redis.get(self._gen_key(scope))
            entry_key = f"{self.prefix}{key}:g{_text(gen)}"
            raw = await self.redis.get(entry_key)
        except RedisError as exc:
            log.warning("product cache unavailable (%s); reading MongoDB", exc)
            return await load()
        if raw is not None:
            return json.loads(raw)
        value = await load()
        if value is not None:
            try:
                await self.redis.set(entry_key, json.dumps(value, separators=(",", ":")), ex=self.ttl)
            except RedisError as exc:
                log.warning("could not fill the product cache: %s", exc)
        return value

    async def product(self, product_id: str, load: Loader) -> Any:
        """The cached JSON of one product (``None`` when it does not exist; misses are not cached)."""
        return await self._read(product_id, f"item:{product_id}", load)

    async def page(self, query: dict[str, Any], load: Loader) -> Any:
        digest = hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return await self._read(LIST, f"list:{digest}", load)

    async def invalidate(self, product_ids: Iterable[str]) -> None:
        """Call after a write commits; raises if Redis cannot be told (callers decide how to retry)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for scope in (*product_ids, LIST):
                key = self._gen_key(scope)
                pipe.incr(key)
                pipe.expire(key, GENERATION_TTL_SECONDS)
            await pipe.execute()
