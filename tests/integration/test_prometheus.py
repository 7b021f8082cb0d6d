"""The local Prometheus (devtools.prometheus, ``make dev ARGS=--prometheus``) against a test shop.

Starts Prometheus with the generated scrape configuration and the shipped rules, places orders through
the gateway, and reads the series back through Prometheus's HTTP API: every service is scraped (``up``),
HTTP and order series arrive labelled with their ``service``, the recording rules produce values, and the
alert rules load. Skips (and says why) when the ``prometheus`` binary is missing (``make infra
INFRA_ARGS=--prometheus`` installs it; CI does). Fails, naming the service, when a service does not serve
``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.procs import free_port
from devtools.prometheus import RULES, LocalPrometheus, find_prometheus
from devtools.shop import LocalShop
from tests.support.saga import create_product, eventually, new_customer, place_order, wait_for_status

ORDERS = 3


@pytest.fixture(scope="module")
def prometheus(shop: LocalShop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    if find_prometheus() is None:
        reason = "the prometheus binary is missing: apt-get install prometheus (make infra INFRA_ARGS=--prometheus)"
        print(f"SKIP test_prometheus: {reason}")
        pytest.skip(reason)
    assert shop.services is not None
    local = LocalPrometheus(targets={name: shop.port(name) for name in shop.services},
                            state_dir=tmp_path_factory.mktemp("prometheus"), port=free_port(), interval="1s")
    proc = local.make_proc().start()
    try:
        proc.wait_ready(30)
        yield local
    finally:
        proc.stop()


def _value(result: list[dict[str, Any]]) -> float:
    return sum(float(r["value"][1]) for r in result)


async def test_prometheus_scrapes_every_service_and_sees_orders(
        prometheus: LocalPrometheus, shop: LocalShop, shop_api: httpx.AsyncClient, admin: str) -> None:
    assert shop.services is not None

    async def all_scraped() -> dict[str, Any] | None:
        targets = prometheus.api("/api/v1/targets")["activeTargets"]
        health = {t["labels"]["service"]: t for t in targets}
        if set(health) == set(shop.services or ()) and all(t["health"] != "unknown" for t in health.values()):
            return health
        return None

    health = await eventually(all_scraped, timeout=30, interval=0.5, what="a scrape of every service")
    down = {name: f"{t['scrapeUrl']}: {t['lastError']}" for name, t in health.items() if t["health"] != "up"}
    assert not down, f"Prometheus cannot scrape these services' /metrics: {down}"

    product = await create_product(shop_api, admin, stock=100)
    token = await new_customer(shop_api)
    for _ in range(ORDERS):
        order = await place_order(shop_api, token, [(product["id"], 1)])
        await wait_for_status(shop_api, token, order["id"], {"confirmed"})

    async def series(query: str, minimum: float) -> list[dict[str, Any]] | None:
        result = prometheus.query(query)
        return result if result and _value(result) >= minimum else None

    async def wait_series(query: str, minimum: float = 0.0, what: str = "") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await eventually(lambda: series(query, minimum), timeout=30, interval=0.5,
                                                        what=f"Prometheus has {what or query} (>= {minimum})")
        return result

    up = await wait_series('up{job="microshop"}', len(shop.services), "target up for every service")
    assert {r["metric"]["service"] for r in up} == set(shop.services)
    requests = await wait_series("sum by (service) (microshop_http_requests_total)", 1, "HTTP request counters")
    assert {"gateway", "orders", "products", "customers"} <= {r["metric"]["service"] for r in requests}
    await wait_series("sum(microshop_orders_placed_total)", ORDERS, "orders placed")
    await wait_series('sum(microshop_orders_status_changes_total{status="confirmed"})', ORDERS, "confirmations")
    await wait_series("sum(faststream_published_messages_total)", 1, "published events")
    # The shipped recording rules evaluate on these series.
    await wait_series("microshop:orders_placed:rate5m", 0, "recording rule microshop:orders_placed:rate5m")
    await wait_series("service:microshop_http_requests:rate5m", 0, "recording rule service:...:rate5m")

    groups = prometheus.api("/api/v1/rules")["groups"]
    assert {g["file"] for g in groups} == {str(RULES)}
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert {"MicroshopOrderPipelineStalled", "MicroshopDeadLetterQueueGrowing", "MicroshopHighErrorRatio"} <= set(rules)
    errors = {name: r.get("lastError") for name, r in rules.items() if r["health"] not in ("ok", "unknown")}
    assert not errors, errors
