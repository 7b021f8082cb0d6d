"""``/api/ws`` on the gateway: authenticated at the edge, proxied to the alerts service's feed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devtools.shop import LocalShop
from tests.support.alerts import create_product, feed, place_order
from tests.support.api import bearer
from tests.support.tokens import attack_tokens, signing_key


@pytest.fixture
def gateway_ws(shop: LocalShop) -> str:
    return shop.url("gateway").replace("http://", "ws://") + "/api/ws"


async def test_order_updates_reach_the_owner_through_the_gateway_only(
        gateway_ws: str, api: httpx.AsyncClient, admin_token: str,
        customer: dict[str, str]) -> None:
    from tests.support.api import register_and_login

    other = await register_and_login(api)
    product = await create_product(api, admin_token, stock=5)
    async with feed(gateway_ws, customer["access_token"], via="header") as mine, \
            feed(gateway_ws, other["access_token"], via="query") as theirs:
        connected = mine.frames[0]
        assert connected["type"] == "connected" and connected["data"]["user_id"] == customer["id"]
        order = await place_order(api, customer["access_token"], [(product["id"], 1)])
        await mine.wait_for(lambda f: f["type"] == "order_status" and f["data"]["order_id"] == order["id"]
                            and f["data"]["status"] == "confirmed", timeout=20)
        assert theirs.about_order(order["id"]) == []


async def _refused(url: str, headers: dict[str, str] | None = None) -> int:
    """The close code (or HTTP status at the handshake) with which the gateway refuses a socket."""
    try:
        async with websockets.connect(url, additional_headers=headers or {}, open_timeout=10) as conn:
            await conn.recv()
    except InvalidStatus as exc:
        return exc.response.status_code
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else -1
    raise AssertionError("the socket was accepted")


async def test_sockets_without_a_valid_token_are_refused(gateway_ws: str, key_file: Path,
                                                         customer: dict[str, str]) -> None:
    # Refused before accept: servers answer the handshake with 403 (ASGI close before accept)
    # or close with 4401 after it; either way no frame is ever delivered.
    assert await _refused(gateway_ws) in (403, 4401)
    for name, token in attack_tokens(signing_key(key_file), customer["id"]).items():
        assert await _refused(gateway_ws, bearer(token)) in (403, 4401), name
        assert await _refused(f"{gateway_ws}?access_token={token}") in (403, 4401), name


async def test_client_is_told_to_reconnect_when_the_alerts_replica_dies(
        shop: LocalShop, customer: dict[str, str]) -> None:
    """A crashed alerts process (no close frame) ends the client's socket with 1013, not a hang."""
    import asyncio

    from devtools.procs import free_port

    alerts = shop.proc_for("alerts")
    alerts_port = free_port()
    alerts.env = {**alerts.env, "MICROSHOP_PORT": str(alerts_port)}
    alerts.ready_url = f"http://127.0.0.1:{alerts_port}/health/ready"
    gateway = shop.proc_for("gateway")
    gateway_port = free_port()
    gateway.env = {**gateway.env, "MICROSHOP_PORT": str(gateway_port),
                   "MICROSHOP_ALERTS_URL": f"http://127.0.0.1:{alerts_port}"}
    gateway.ready_url = f"http://127.0.0.1:{gateway_port}/health/live"
    alerts.start()
    gateway.start()
    try:
        alerts.wait_ready(60)
        gateway.wait_ready(60)
        async with feed(f"ws://127.0.0.1:{gateway_port}/api/ws", customer["access_token"]) as live:
            alerts.kill()
            await asyncio.wait_for(live._task, 20)
            assert live.closed_code == 1013
    finally:
        gateway.stop()
        alerts.stop()
