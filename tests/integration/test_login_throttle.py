"""Per-account throttling of failed logins (issue 12): in Redis, per email, whatever the caller.

Through the shop (gateway and direct), then the throttle's arithmetic against the real Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from customers.throttle import LoginThrottle
from devtools.procs import free_port
from devtools.shop import LocalShop
from shopkit.errors import ProblemError
from tests.support.api import api_client, register_and_login

PASSWORD = "correct horse battery"
THRESHOLD = 5  # the default MICROSHOP_LOGIN_FAILURES_BEFORE_LOCKOUT
LOCKOUT = 30  # the default MICROSHOP_LOGIN_LOCKOUT_SECONDS


async def test_failed_logins_lock_the_account_for_every_caller(shop: LocalShop) -> None:
    async with api_client(shop) as gateway, \
            httpx.AsyncClient(base_url=shop.url("customers"), timeout=15) as direct:
        victim = await register_and_login(gateway)
        bystander = await register_and_login(gateway)
        wrong = {"email": victim["email"].upper(), "password": "not the password"}  # any spelling of the email
        # Failures from two different callers (the gateway, and the service directly) add up.
        answers = [await (gateway if i % 2 else direct).post("/auth/login", json=wrong) for i in range(THRESHOLD)]
        assert [r.status_code for r in answers] == [401] * (THRESHOLD - 1) + [429]
        for client in (gateway, direct):
            r = await client.post("/auth/login", json={"email": victim["email"], "password": PASSWORD})
            assert r.status_code == 429, r.text  # even the right password, while locked
            assert r.headers["content-type"].startswith("application/problem+json")
            assert 1 <= int(r.headers["retry-after"]) <= LOCKOUT
            assert r.json()["type"].endswith("/login-throttled")
        # Another account is not affected; nor is an unknown email, which is throttled the same way.
        r = await gateway.post("/auth/login", json={"email": bystander["email"], "password": PASSWORD})
        assert r.status_code == 200
        r = await gateway.post("/auth/login", json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com",
                                                    "password": PASSWORD})
        assert r.status_code == 401


async def test_known_and_unknown_emails_answer_alike_at_every_step(shop: LocalShop) -> None:
    """No account enumeration through the throttle: the same answers, step by step, for both kinds of email."""
    async with api_client(shop, timeout=30) as gateway:
        known = (await register_and_login(gateway))["email"]
        unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"

        async def attempt(email: str) -> tuple[int, str, bool, float]:
            start = time.perf_counter()
            r = await gateway.post("/auth/login", json={"email": email, "password": "not the password"})
            took = time.perf_counter() - start
            return r.status_code, r.json()["type"].rsplit("/", 1)[-1], "retry-after" in r.headers, took

        steps = [(await attempt(known), await attempt(unknown)) for _ in range(THRESHOLD + 2)]
        for i, (k, u) in enumerate(steps):
            assert k[:3] == u[:3], f"step {i + 1}: known {k[:3]} vs unknown {u[:3]}"
        assert [k[0] for k, _ in steps] == [401] * (THRESHOLD - 1) + [429] * 3
        # Timing: before the lock both spend one password hash, so neither is several times faster.
        checked_known = sorted(k[3] for k, _ in steps[:THRESHOLD - 1])
        checked_unknown = sorted(u[3] for _, u in steps[:THRESHOLD - 1])
        middle = len(checked_known) // 2
        assert 1 / 3 < checked_known[middle] / checked_unknown[middle] < 3, (checked_known, checked_unknown)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    yield client
    await client.aclose()


def throttle(redis: Redis | None, namespace: str) -> LoginThrottle:
    return LoginThrottle(redis, namespace, threshold=2, lockout_seconds=1, max_lockout_seconds=3, window_seconds=60)


async def test_lockouts_double_up_to_the_cap_and_expire(redis: Redis) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}."
    t = throttle(redis, namespace)
    email = "someone@example.com"
    try:
        assert [await t.failed(email) for _ in range(5)] == [0, 1, 2, 3, 3]
        with pytest.raises(ProblemError) as locked:
            await t.check(email)
        assert locked.value.status_code == 429
        assert locked.value.headers is not None and 1 <= int(locked.value.headers["Retry-After"]) <= 3
        await t.check("someone-else@example.com")  # per account
        await asyncio.sleep(3.2)
        await t.check(email)  # the lock expired
        await t.succeeded(email)  # a success clears the count: the next failure starts over
        assert await t.failed(email) == 0
    finally:
        keys = [k async for k in redis.scan_iter(f"{namespace}*")]
        if keys:
            await redis.delete(*keys)


async def test_the_throttle_fails_open_without_redis() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    try:
        t = throttle(dead, "x.")
        for _ in range(5):
            assert await t.failed("someone@example.com") == 0
        await t.check("someone@example.com")
        await t.succeeded("someone@example.com")
    finally:
        await dead.aclose()
