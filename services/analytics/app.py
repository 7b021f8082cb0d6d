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
from shopkit.app import Consume, Resources, Service, Uses
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, ProductUpdated, StockLow
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    dashboard_cache: DashboardCache
    recorder: Recorder


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        await ensure_indexes(res.db)
        cache = DashboardCache(res.redis, res.db, namespace=config.namespace,
                               max_staleness_seconds=config.dashboard_max_staleness_seconds,
                               top_limit=config.top_products_limit, revenue_days=config.revenue_days)
        yield Deps(cache, Recorder(res.client, res.db, cache.invalidate))

    return Service(
        Settings, config, build=build, routes=[DashboardController],
        # Every event analytics folds into its aggregates: one batch (one transaction) serves all five queues.
        # Nobody waits on analytics: a batch's first event waits for the other events of its orders
        # (batch_hold_ms), so the five events of one order usually share one transaction, even at light load.
        consumes={(OrderCreated, OrderUpdated, StockLow, ProductUpdated, AlertSent):
                  Consume(lambda deps: deps.recorder.record, hold=config.batch_hold_ms / 1000)},
        uses=Uses(redis=True, events=True, ready_without=frozenset({"broker"})),
        title="microshop analytics",
        description="Aggregates of orders, revenue, products and stock, fed by events; the admin dashboard.",
    ).app()
