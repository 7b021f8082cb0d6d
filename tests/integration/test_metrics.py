"""Metrics (issue 13): every service's ``/metrics`` has the shop's series, and they move when an order is placed."""

from __future__ import annotations

import re

import httpx

from devtools.shop import LocalShop
from tests.support.metrics import parse_samples, total
from tests.support.saga import auth, create_product, eventually, place_order, wait_for_status
from tests.support.services import CHART_ORDER

SERVICES = CHART_ORDER

# Series each service must expose (the kit's are everywhere; these are where they mean something).
EXPECTED: dict[str, tuple[str, ...]] = {
    "gateway": ("microshop_http_requests_total", "microshop_http_request_duration_seconds_bucket",
                "microshop_rate_limited_total"),
    "customers": ("microshop_http_requests_total", "microshop_password_hash_queue_depth"),
    "products": ("microshop_stock_low_products_total", "microshop_events_redelivered_total",
                 "microshop_events_dead_lettered_total", "microshop_outbox_pending",
                 "microshop_outbox_oldest_age_seconds", "microshop_consumer_batch_size_bucket"),
    "orders": ("microshop_orders_placed_total", "microshop_orders_status_changes_total",
               "microshop_order_confirm_seconds_bucket", "microshop_outbox_pending",
               "faststream_published_messages_total", "faststream_received_processed_messages_duration_seconds_bucket"),
    "alerts": ("microshop_websocket_connections", "faststream_received_messages_total"),
    "analytics": ("faststream_received_messages_total", "microshop_consumer_batch_size_bucket"),
}


async def scrape(client: httpx.AsyncClient, shop: LocalShop, service: str) -> dict[str, float]:
    r = await client.get(f"{shop.url(service)}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse_samples(r.text)


async def scrape_all(client: httpx.AsyncClient, shop: LocalShop) -> dict[str, dict[str, float]]:
    return {name: await scrape(client, shop, name) for name in SERVICES}


async def test_every_service_exposes_the_series_and_they_move_when_an_order_is_placed(
        shop: LocalShop, shop_api: httpx.AsyncClient, admin: str, buyer: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = await scrape_all(client, shop)
        for service, names in EXPECTED.items():
            # FastStream's series are labelled by destination: they appear with a destination's first message.
            for name in (n for n in names if not n.startswith("faststream_")):
                assert any(k == name or k.startswith(name + "{") for k in before[service]), f"{service}: no {name}"

        # stock 3, threshold 1: an order of 2 takes it to the threshold (a stock_low event).
        product = await create_product(shop_api, admin, stock=3, low_stock_threshold=1)
        order = await place_order(shop_api, buyer, [(product["id"], 2)])
        assert (await wait_for_status(shop_api, buyer, order["id"]))["status"] == "confirmed"

        def grew(service: str, name: str, **labels: str) -> bool:
            return total(after[service], name, **labels) > total(before[service], name, **labels)

        after: dict[str, dict[str, float]] = {}
        failing: list[int] = []

        async def moved() -> bool:
            after.update(await scrape_all(client, shop))
            checks = [
                grew("gateway", "microshop_http_requests_total", app_name="gateway", method="POST",
                     path="/api/orders", status_code="201"),
                grew("gateway", "microshop_http_request_duration_seconds_count", app_name="gateway"),
                grew("orders", "microshop_http_requests_total", app_name="orders", method="POST", status_code="201"),
                grew("orders", "microshop_orders_placed_total"),
                grew("orders", "microshop_orders_status_changes_total", status="confirmed"),
                grew("orders", "microshop_order_confirm_seconds_count"),
                grew("orders", "faststream_published_messages_total", status="success"),
                grew("orders", "faststream_received_processed_messages_total", status="acked"),
                grew("orders", "microshop_consumer_batch_size_count"),
                grew("products", "faststream_received_messages_total"),
                grew("products", "microshop_stock_low_products_total"),
                grew("products", "microshop_consumer_batch_size_count"),
                grew("alerts", "faststream_received_messages_total"),
                grew("analytics", "faststream_received_messages_total"),
            ]
            failing[:] = [i for i, ok in enumerate(checks) if not ok]
            return not failing

        try:
            await eventually(moved, timeout=20, what="the metrics to count the order")
        except AssertionError as exc:
            raise AssertionError(f"checks {failing} (0-based, in order) did not move") from exc
        for service, names in EXPECTED.items():
            for name in names:
                assert any(k == name or k.startswith(name + "{") for k in after[service]), f"{service}: no {name}"

        # Route templates, never raw ids: no label carries the order's or the product's id.
        for service, samples in after.items():
            for key in samples:
                assert order["id"] not in key and product["id"] not in key, f"{service}: {key}"
                assert not re.search(r"[0-9a-f]{24}", key), f"{service}: an id in a label: {key}"
        # The outbox drained: nothing pending, nothing old.
        assert after["orders"]["microshop_outbox_pending"] >= 0


async def test_metrics_are_not_served_through_the_gateway(shop: LocalShop, admin: str) -> None:
    async with httpx.AsyncClient(base_url=shop.url("gateway"), timeout=10) as client:
        for path in ("/api/metrics", "/api/metrics/", "/api/orders/metrics", "/api/products/../metrics"):
            r = await client.get(path, headers=auth(admin))
            assert r.status_code != 200 or "microshop_http_requests_total" not in r.text, path
            assert "# TYPE" not in r.text, path
        # The gateway's own page is on its port, outside /api (not routed by the Ingress, which serves /api).
        r = await client.get("/metrics")
        assert r.status_code == 200 and "microshop_http_requests_total" in r.text
