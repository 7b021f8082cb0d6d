"""Rate limiting shared in Redis by two gateway processes (5 requests per 60 s per caller).

Each test calls from its own loopback source address (127.0.0.x), so its anonymous bucket
starts full whatever ran before; signed-in callers are fresh customers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devtools.shop import LocalShop
from tests.support.alerts import feed
from tests.support.api import bearer, register_and_login, unique_email
from tests.support.gateway import GatewayProc, start_gateways, stop_gateways

LIMIT = 5
WINDOW = 60


@pytest.fixture(scope="module")
def limited(shop: LocalShop, namespace: str) -> Iterator[list[GatewayProc]]:
    env = {
        "MICROSHOP_RATE_LIMIT_REQUESTS": str(LIMIT),
        "MICROSHOP_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW),
        # Both gateways share this namespace (and the one Redis), nobody else does.
        "MICROSHOP_NAMESPACE": f"{namespace}rl{uuid.uuid4().hex[:6]}.",
    }
    started = start_gateways(shop, {"gw-rl-a": env, "gw-rl-b": env})
    try:
        yield list(started.values())
    finally:
        stop_gateways(started)


@asynccontextmanager
async def clients_from(source_ip: str, gateways: list[GatewayProc]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [
        httpx.AsyncClient(base_url=g.api, timeout=10, transport=httpx.AsyncHTTPTransport(local_address=source_ip))
        for g in gateways
    ]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def test_counters_are_shared_by_every_gateway(limited: list[GatewayProc]) -> None:
    async with clients_from("127.0.0.2", limited) as (a, b):
        remaining = []
        for i in range(LIMIT):
            r = await (a if i % 2 == 0 else b).get("/auth/jwks")
            assert r.status_code == 200, r.text
            assert r.headers["ratelimit-limit"] == str(LIMIT)
            assert int(r.headers["ratelimit-reset"]) > 0
            remaining.append(int(r.headers["ratelimit-remaining"]))
        assert remaining == [4, 3, 2, 1, 0]

        refused = await b.get("/auth/jwks")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "https://microshop.dev/problems/rate-limited"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= WINDOW // LIMIT
        assert refused.headers["ratelimit-limit"] == str(LIMIT)
        assert refused.headers["ratelimit-remaining"] == "0"
        assert 0 < int(refused.headers["ratelimit-reset"]) <= WINDOW
        assert refused.headers["x-request-id"]

        # The other gateway agrees, and a made-up X-Forwarded-For (not trusted) changes nothing.
        again = await a.get("/auth/jwks", headers={"X-Forwarded-For": "198.51.100.23"})
        assert again.status_code == 429


async def test_signed_in_callers_are_limited_per_user(
    limited: list[GatewayProc], customer: dict[str, str]
) -> None:
    token = {"Authorization": f"Bearer {customer['access_token']}"}
    async with clients_from("127.0.0.3", limited) as (a, b):
        for _ in range(LIMIT):
            assert (await a.get("/auth/jwks")).status_code == 200
        assert (await b.get("/auth/jwks")).status_code == 429  # this address is used up...

        first = await b.get("/customers/me", headers=token)  # ...but the user has their own bucket
        assert first.status_code == 200, first.text
        assert first.json()["id"] == customer["id"]
        assert first.headers["ratelimit-remaining"] == str(LIMIT - 1)
        for _ in range(LIMIT - 1):
            assert (await a.get("/customers/me", headers=token)).status_code == 200
        over = await b.get("/customers/me", headers=token)
        assert over.status_code == 429
        assert over.headers["retry-after"]


async def test_invalid_tokens_are_counted_against_the_callers_ip(limited: list[GatewayProc]) -> None:
    bad = {"Authorization": "Bearer not.a.valid-token"}
    async with clients_from("127.0.0.9", limited) as (a, b):
        for i in range(LIMIT):
            r = await (a if i % 2 == 0 else b).get("/customers/me", headers=bad)
            assert r.status_code == 401, r.text
            assert r.headers["ratelimit-remaining"] == str(LIMIT - 1 - i)
        refused = await a.get("/customers/me", headers=bad)
        assert refused.status_code == 429
        # The same IP without a token is the same bucket: spraying tokens cannot reset it.
        assert (await b.get("/auth/jwks")).status_code == 429


async def test_anonymous_endpoints_count_against_the_client_whatever_token_is_attached(
    limited: list[GatewayProc], api: httpx.AsyncClient
) -> None:
    """Attaching (self-registered) tokens buys no fresh buckets of logins, registrations or refreshes."""
    tokens = [(await register_and_login(api))["access_token"] for _ in range(2)]
    async with clients_from("127.0.0.10", limited) as (a, b):
        for i in range(LIMIT):  # each attempt with another token: still one bucket, the address's
            r = await (a if i % 2 == 0 else b).post(
                "/auth/login", headers=bearer(tokens[i % 2]),
                json={"email": unique_email("nobody"), "password": "not the password"})
            assert r.status_code == 401, r.text
            assert r.headers["ratelimit-remaining"] == str(LIMIT - 1 - i)
        for path, body in (("/auth/login", {"email": unique_email("nobody"), "password": "not the password"}),
                           ("/auth/register", {"email": unique_email(), "password": "correct horse battery",
                                               "name": "Spray"}),
                           ("/auth/refresh", {"refresh_token": "x" * 32})):
            for token in tokens:
                r = await a.post(path, headers=bearer(token), json=body)
                assert r.status_code == 429, (path, r.text)
                assert r.json()["type"].endswith("/rate-limited")
        # The tokens' own buckets were not touched: signed-in endpoints still count per user.
        r = await b.get("/customers/me", headers=bearer(tokens[0]))
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-remaining"] == str(LIMIT - 1)


async def test_websocket_upgrades_count_in_the_callers_bucket(
    limited: list[GatewayProc], customer: dict[str, str]
) -> None:
    token = customer["access_token"]
    sockets = [g.api.replace("http://", "ws://", 1) + "/ws" for g in limited]
    for i in range(LIMIT):
        async with feed(sockets[i % 2], token) as live:
            assert live.frames[0]["type"] == "connected"
    # The upgrades used the user's whole bucket: the next request and the next upgrade are refused.
    async with clients_from("127.0.0.11", limited) as (a, _):
        r = await a.get("/customers/me", headers=bearer(token))
        assert r.status_code == 429, r.text
    async with websockets.connect(f"{sockets[0]}?access_token={token}", open_timeout=10) as conn:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4429
    assert "rate limit" in closed.value.rcvd.reason


async def test_upgrades_with_invalid_tokens_are_counted_against_the_callers_ip(limited: list[GatewayProc]) -> None:
    socket = limited[0].api.replace("http://", "ws://", 1) + "/ws?access_token=not.a.valid-token"
    for _ in range(LIMIT):
        with pytest.raises(websockets.InvalidStatus):  # closed before accepting: 4401 reaches it as 403
            await websockets.connect(socket, open_timeout=10, local_addr=("127.0.0.12", 0))
    async with clients_from("127.0.0.12", limited) as (_, b):
        r = await b.get("/auth/jwks")  # the address's bucket is used up (on either gateway)
        assert r.status_code == 429, r.text
