"""``create_app``: the analytics service (event consumers keeping aggregates, the cached admin dashboard).

The shop runs without it when ``MICROSHOP_ANALYTICS_ENABLED=false`` (the gateway leaves it out of
``/api/health``, ``make dev`` and the chart do not start it): nothing else waits on analytics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from analytics.controllers import DashboardController
from analytics.dashboard import DashboardCache
from analytics.recorder import Recorder, ensure_indexes
from analytics.settings import Settings
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, ProductUpdated, StockLow
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    dashboard_cache: DashboardCache
    recorder: Recorder


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()

    @contextlib.asynccontextmanager
    async def build(res: Resources) -> AsyncIterator[Deps]:
        await ensure_indexes(res.db)
        cache = DashboardCache(
            res.cache, res.db, namespace=settings.namespace,
            max_staleness_seconds=settings.dashboard_max_staleness_seconds,
            top_limit=settings.top_products_limit, revenue_days=settings.revenue_days,
        )
        yield Deps(cache, Recorder(res.client, res.db, cache.invalidate))

    service = Service(
        settings,
        title="microshop analytics",
        description="Aggregates of orders, revenue, products and stock, fed by events; the admin dashboard.",
        routes=[DashboardController],
        deps=Deps,
        build=build,
        uses=Uses(redis=True, events=True),
    )
    service.consume(OrderCreated, lambda deps: deps.recorder.on_order_events)
    service.consume(OrderUpdated, lambda deps: deps.recorder.on_order_events)
    service.consume(StockLow, lambda deps: deps.recorder.on_stock_low)
    service.consume(ProductUpdated, lambda deps: deps.recorder.on_product_updated)
    service.consume(AlertSent, lambda deps: deps.recorder.on_alert_sent)
    return service.app()
