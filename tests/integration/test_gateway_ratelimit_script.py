"""The gateway's GCRA Lua script against the real Redis on 127.0.0.1:6379.

Moved from the unit tier, which runs with no services; two gateways sharing the buckets:
test_gateway_ratelimit.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.ratelimit import RateLimiter


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def limiter_for(redis: Redis, limit: int, window: int) -> RateLimiter:
    limiter = RateLimiter(limit, window, namespace=f"unit{uuid.uuid4().hex[:8]}.")
    limiter.bind(redis)
    return limiter


async def test_a_full_bucket_allows_limit_requests_then_refuses(redis: Redis) -> None:
    limiter = limiter_for(redis, limit=5, window=60)
    decisions = [await limiter.hit("ip:10.0.0.1") for _ in range(6)]
    assert all(d is not None for d in decisions)
    assert [d.allowed for d in decisions if d] == [True, True, True, True, True, False]
    assert [d.remaining for d in decisions if d] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused is not None
    # One request's worth refills every 60/5 = 12 s.
    assert 11 <= refused.retry_after_seconds <= 12
    assert 59 <= refused.reset_seconds <= 60
    assert refused.headers()["Retry-After"] == str(refused.retry_after_seconds)
    assert refused.headers()["RateLimit-Limit"] == "5"
    assert refused.headers()["RateLimit-Remaining"] == "0"
    assert "Retry-After" not in decisions[0].headers()  # type: ignore[union-attr]


async def test_callers_have_separate_buckets(redis: Redis) -> None:
    limiter = limiter_for(redis, limit=2, window=60)
    assert (await limiter.hit("user:a")).allowed  # type: ignore[union-attr]
    assert (await limiter.hit("user:a")).allowed  # type: ignore[union-attr]
    assert not (await limiter.hit("user:a")).allowed  # type: ignore[union-attr]
    other = await limiter.hit("user:b")
    assert other is not None and other.allowed and other.remaining == 1


async def test_refused_requests_do_not_use_up_the_bucket(redis: Redis) -> None:
    limiter = limiter_for(redis, limit=1, window=60)
    assert (await limiter.hit("ip:x")).allowed  # type: ignore[union-attr]
    before = await redis.get(limiter.key("ip:x"))
    for _ in range(3):
        assert not (await limiter.hit("ip:x")).allowed  # type: ignore[union-attr]
    assert await redis.get(limiter.key("ip:x")) == before


async def test_the_bucket_refills_with_time(redis: Redis) -> None:
    # 1 s window and 2 requests: one request's worth comes back every 0.5 s. We move time by
    # rewinding the stored timestamp (what 0.6 s of waiting would do), not by sleeping.
    limiter = limiter_for(redis, limit=2, window=1)
    key = limiter.key("ip:y")
    assert (await limiter.hit("ip:y")).allowed  # type: ignore[union-attr]
    assert (await limiter.hit("ip:y")).allowed  # type: ignore[union-attr]
    assert not (await limiter.hit("ip:y")).allowed  # type: ignore[union-attr]
    tat = int(await redis.get(key))  # type: ignore[arg-type]
    await redis.set(key, str(tat - 600_000), px=5000)
    again = await limiter.hit("ip:y")
    assert again is not None and again.allowed and again.remaining == 0


async def test_keys_are_namespaced_and_expire(redis: Redis) -> None:
    limiter = limiter_for(redis, limit=10, window=60)
    await limiter.hit("user:z")
    key = limiter.key("user:z")
    assert key.startswith(limiter.prefix) and key.endswith("gateway:ratelimit:user:z")
    ttl = await redis.pttl(key)
    assert 0 < ttl <= 6_000  # one request's worth of the 60 s window
