"""``create_app``: the analytics service (event consumers keeping aggregates, the cached admin dashboard).

The shop runs without it when ``MICROSHOP_ANALYTICS_ENABLED=false`` (the gateway leaves it out of
``/api/health``, ``make dev`` and the chart do not start it): nothing else waits on analytics.
"""

from __future__ import annotations

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


async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
    await ensure_indexes(res.db)
    config = res.settings
    cache = DashboardCache(res.cache, res.db, namespace=config.namespace,
                           max_staleness_seconds=config.dashboard_max_staleness_seconds,
                           top_limit=config.top_products_limit, revenue_days=config.revenue_days)
    yield Deps(cache, Recorder(res.client, res.db, cache.invalidate))


# Every event analytics folds into its aggregates: one batch (one transaction) serves all five queues.
FEEDS = (OrderCreated, OrderUpdated, StockLow, ProductUpdated, AlertSent)


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    service = Service(Settings, settings, build=build, routes=[DashboardController],
                      uses=Uses(redis=True, events=True, ready_without=frozenset({"broker"})),
                      title="microshop analytics",
                      description="Aggregates of orders, revenue, products and stock, fed by events; the admin "
                                  "dashboard.")
    # Nobody waits on analytics: a batch waits for the other events of its orders (batch_hold_ms), so the
    # five events of one order usually share one transaction, even at light load.
    service.consume(FEEDS, lambda deps: deps.recorder.record, hold=service.settings.batch_hold_ms / 1000)
    return service.app()
