"""Limits on the live feed (issue 12): a per-user cap on open sockets, a per-user rate of connection
attempts (both close with 4429, across the gateway and the alerts service alike), and the socket
closed with 4401 when its access token expires."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devtools.shop import LocalShop
from tests.support.alerts import alerts_ws_url_of, feed, ws_url_for
from tests.support.tokens import TokenMint

MAX_SOCKETS = 5  # alerts' default MICROSHOP_WS_MAX_SOCKETS_PER_USER
ATTEMPTS = 20  # alerts' default MICROSHOP_WS_CONNECT_ATTEMPTS (per 60 s)


def user_token(mint: TokenMint, **claims: object) -> str:
    return mint.token(sub=f"ws-{uuid.uuid4().hex[:12]}", **claims)


async def close_of(url: str, token: str) -> tuple[int | None, str]:
    """Connect and read until the server closes: its close code and reason (None if still open after 5 s)."""
    async with websockets.connect(f"{url}?access_token={token}", open_timeout=10) as conn:
        try:
            async with asyncio.timeout(5):
                while True:
                    await conn.recv()
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
        except TimeoutError:
            return None, ""


async def test_a_user_gets_at_most_max_sockets_at_once(shop: LocalShop, mint: TokenMint) -> None:
    gateway, direct = alerts_ws_url_of(shop), ws_url_for(shop.url("alerts"))
    token = user_token(mint)
    async with contextlib.AsyncExitStack() as stack:
        feeds = [await stack.enter_async_context(feed(gateway if i % 2 else direct, token))
                 for i in range(MAX_SOCKETS)]
        for url in (gateway, direct):  # counted across the gateway and the service alike
            code, reason = await close_of(url, token)
            assert code == 4429 and "live sockets" in reason, (url, code, reason)
        assert await close_of(alerts_ws_url_of(shop), user_token(mint)) == (None, "")  # another user: fine
        await feeds[0].close()
        async with feed(gateway, token) as again:  # a slot is free again
            assert again.frames[0]["type"] == "connected"


async def test_connection_attempts_are_rate_limited_per_user(shop: LocalShop, mint: TokenMint) -> None:
    gateway = alerts_ws_url_of(shop)
    token = user_token(mint)
    for _ in range(ATTEMPTS):
        async with feed(gateway, token):
            pass
    code, reason = await close_of(gateway, token)
    assert code == 4429 and "attempts" in reason, (code, reason)


@pytest.mark.parametrize("path", ["gateway", "direct"])
async def test_the_socket_closes_when_its_token_expires(shop: LocalShop, mint: TokenMint, path: str) -> None:
    url = alerts_ws_url_of(shop) if path == "gateway" else ws_url_for(shop.url("alerts"))
    expires = int(time.time()) + 3
    async with feed(url, user_token(mint, exp=expires)) as live:
        async with asyncio.timeout(10):
            while live.closed_code is None:
                await asyncio.sleep(0.05)
        assert live.closed_code == 4401
        assert time.time() >= expires - 0.5  # at exp, not before
