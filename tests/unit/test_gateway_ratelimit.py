"""The gateway's rate limiter with Redis away (the GCRA script against a real Redis is an integration test:
tests/integration/test_gateway_ratelimit_script.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from devtools.procs import free_port
from gateway.ratelimit import RateLimiter


@pytest.mark.allow_connect  # a refused connection to a free local port: Redis is away
async def test_limiter_fails_open_when_redis_is_unreachable() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        limiter = RateLimiter(1, 60)
        limiter.bind(dead)
        assert await limiter.hit("ip:z") is None
        assert await limiter.hit("ip:z") is None  # and keeps serving while Redis is away
    finally:
        await dead.aclose()
