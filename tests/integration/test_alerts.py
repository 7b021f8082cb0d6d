"""Alerts service: alerts from the order saga and stock events, GET /alerts, and the WebSocket push.

Real RabbitMQ, Redis and SecantusDB; HTTP through the gateway (``api``). The WebSocket URL
comes from the ``alerts_ws_url`` fixture (the alerts service until the gateway proxies /api/ws).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from devtools.procs import Proc, free_port
from devtools.shop import LocalShop
from tests.support.alerts import (
    Feed,
    alerts_ws_url_of,
    create_product,
    eventually,
    feed,
    place_order,
    ws_url_for,
)
from tests.support.api import bearer, register_and_login
from tests.support.tokens import claims, mint, signing_key

DEADLINE = 20.0


@pytest.fixture
def alerts_ws_url(shop: LocalShop) -> str:
    return alerts_ws_url_of(shop)


def is_status(order_id: str, status: str) -> object:
    return lambda f: f["type"] == "order_status" and f["data"]["order_id"] == order_id and f["data"]["status"] == status


async def test_customer_socket_sees_pending_then_confirmed_and_nobody_else_does(
        api: httpx.AsyncClient, admin_token: str, alerts_ws_url: str) -> None:
    alice, bob = await register_and_login(api), await register_and_login(api)
    product = await create_product(api, admin_token, stock=50, threshold=1)
    async with feed(alerts_ws_url, alice["access_token"], via="query") as a, \
            feed(alerts_ws_url, bob["access_token"], via="header") as b:
        order = await place_order(api, alice["access_token"], [(product["id"], 2)])
        oid = order["id"]
        pending = await a.wait_for(is_status(oid, "pending"), DEADLINE)  # type: ignore[arg-type]
        confirmed = await a.wait_for(is_status(oid, "confirmed"), DEADLINE)  # type: ignore[arg-type]
        assert a.frames.index(pending) < a.frames.index(confirmed)
        assert confirmed["data"]["total"] == 2 * product["price"] and confirmed["data"]["currency"] == "EUR"
        alert = await a.wait_for(lambda f: f["type"] == "alert" and f["data"]["data"].get("status") == "confirmed"
                                 and f["data"]["data"]["order_id"] == oid, DEADLINE)
        assert set(alert["data"]) == {"id", "type", "message", "data", "read", "created_at"}
        assert alert["data"]["type"] == "order_status" and alert["data"]["read"] is False

        # Barrier: once Bob's own order reached his socket, Alice's would have too if it were misrouted.
        bob_order = await place_order(api, bob["access_token"], [(product["id"], 1)])
        await b.wait_for(is_status(bob_order["id"], "confirmed"), DEADLINE)  # type: ignore[arg-type]
        assert b.about_order(oid) == []
        assert a.about_order(bob_order["id"]) == []
        # No status went backwards on Alice's socket.
        statuses = [f["data"]["status"] for f in a.frames if f["type"] == "order_status"]
        assert statuses == ["pending", "confirmed"]


async def test_get_alerts_lists_mine_paginates_filters_unread_and_marks_read(
        api: httpx.AsyncClient, admin_token: str, alerts_ws_url: str) -> None:
    alice, bob = await register_and_login(api), await register_and_login(api)
    product = await create_product(api, admin_token, stock=50, threshold=1)
    async with feed(alerts_ws_url, alice["access_token"]) as a:
        order = await place_order(api, alice["access_token"], [(product["id"], 1)])
        await a.wait_for(is_status(order["id"], "confirmed"), DEADLINE)  # type: ignore[arg-type]

    async def two_alerts() -> bool:
        r = await api.get("/alerts", headers=bearer(alice["access_token"]))
        return r.status_code == 200 and r.json()["total"] == 2

    await eventually(two_alerts, DEADLINE)
    r = await api.get("/alerts", params={"limit": 1}, headers=bearer(alice["access_token"]))
    page = r.json()
    assert page["limit"] == 1 and page["offset"] == 0 and page["total"] == 2 and len(page["items"]) == 1
    newest = page["items"][0]
    assert newest["data"]["status"] == "confirmed" and newest["read"] is False

    r = await api.post(f"/alerts/{newest['id']}/read", headers=bearer(bob["access_token"]))
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await api.post(f"/alerts/{newest['id']}/read", headers=bearer(alice["access_token"]))
    assert r.status_code == 200 and r.json()["read"] is True and r.json()["id"] == newest["id"]

    r = await api.get("/alerts", params={"unread": "true"}, headers=bearer(alice["access_token"]))
    assert [i["data"]["status"] for i in r.json()["items"]] == ["pending"]
    r = await api.get("/alerts", params={"unread": "false"}, headers=bearer(alice["access_token"]))
    assert [i["id"] for i in r.json()["items"]] == [newest["id"]]
    r = await api.get("/alerts", headers=bearer(bob["access_token"]))
    assert r.json()["total"] == 0
    # Admins see every alert; the customer's read state shows through.
    r = await api.get("/alerts", params={"limit": 100}, headers=bearer(admin_token))
    mine = {i["id"]: i for i in r.json()["items"]}
    assert newest["id"] in mine and mine[newest["id"]]["read"] is True
    r = await api.get("/alerts", params={"limit": 0}, headers=bearer(alice["access_token"]))
    assert r.status_code == 400 or r.status_code == 422
    r = await api.get("/alerts")
    assert r.status_code == 401


async def test_admin_socket_gets_stock_low_when_an_order_crosses_the_threshold(
        api: httpx.AsyncClient, admin_token: str, alerts_ws_url: str) -> None:
    customer = await register_and_login(api)
    product = await create_product(api, admin_token, stock=5, threshold=2)
    async with feed(alerts_ws_url, admin_token) as admin, feed(alerts_ws_url, customer["access_token"]) as cust:
        order = await place_order(api, customer["access_token"], [(product["id"], 3)])
        alert = await admin.wait_for(lambda f: f["type"] == "alert" and f["data"]["type"] == "stock_low"
                                     and f["data"]["data"]["product_id"] == product["id"], DEADLINE)
        assert alert["data"]["data"]["stock"] == 2 and product["name"] in alert["data"]["message"]
        await cust.wait_for(is_status(order["id"], "confirmed"), DEADLINE)  # type: ignore[arg-type]
        assert not [f for f in cust.frames if f["type"] == "alert" and f["data"]["type"] == "stock_low"]

    # Role alert: each admin has their own read state.
    r = await api.post(f"/alerts/{alert['data']['id']}/read", headers=bearer(admin_token))
    assert r.status_code == 200 and r.json()["read"] is True
    r = await api.get("/alerts", params={"unread": "true", "limit": 100}, headers=bearer(admin_token))
    assert alert["data"]["id"] not in {i["id"] for i in r.json()["items"]}
    r = await api.post(f"/alerts/{alert['data']['id']}/read", headers=bearer(customer["access_token"]))
    assert r.status_code == 404


@pytest.fixture
def second_alerts(shop: LocalShop) -> Iterator[tuple[Proc, str]]:
    """Another alerts process, same env as the shop's but its own port and a fast heartbeat."""
    base = shop.proc_for("alerts")
    port = free_port()
    proc = dataclasses.replace(
        base, name="alerts-2", env={**base.env, "MICROSHOP_PORT": str(port), "MICROSHOP_WS_HEARTBEAT_SECONDS": "0.5"},
        ready_url=f"http://127.0.0.1:{port}/health/ready", popen=None, lines=[],
    )
    proc.start()
    try:
        proc.wait_ready(60)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


async def test_with_two_replicas_a_user_on_either_gets_every_message(
        api: httpx.AsyncClient, admin_token: str, shop: LocalShop, second_alerts: tuple[Proc, str]) -> None:
    _, url2 = second_alerts
    customer = await register_and_login(api)
    product = await create_product(api, admin_token, stock=100, threshold=0)
    async with feed(ws_url_for(shop.url("alerts")), customer["access_token"]) as one, \
            feed(ws_url_for(url2), customer["access_token"]) as two:
        # Orders are consumed by whichever replica the broker picks; both sockets get every frame.
        orders = [await place_order(api, customer["access_token"], [(product["id"], 1)]) for _ in range(4)]
        for sock in (one, two):
            for order in orders:
                await sock.wait_for(is_status(order["id"], "confirmed"), DEADLINE)  # type: ignore[arg-type]
        # The second replica runs a 0.5 s heartbeat.
        await two.wait_for(lambda f: f["type"] == "ping", 5.0)


async def test_websocket_refuses_missing_expired_and_forged_tokens(alerts_ws_url: str, key_file: Path,
                                                                   customer: dict[str, str]) -> None:
    key = signing_key(key_file)
    now = int(time.time())
    expired = mint(key, claims(customer["id"], iat=now - 3600, exp=now - 1800))
    for url, headers in [
        (alerts_ws_url, None),
        (f"{alerts_ws_url}?access_token={expired}", None),
        (alerts_ws_url, bearer(expired)),
        (f"{alerts_ws_url}?access_token=not.a.jwt", None),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 403, url
    # The same socket with a valid token is accepted (the refusals above are about the token only).
    async with feed(alerts_ws_url, customer["access_token"]) as ok:
        assert isinstance(ok, Feed) and ok.frames[0]["data"]["user_id"] == customer["id"]
