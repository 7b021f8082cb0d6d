"""``create_app``: the analytics service (event consumers keeping aggregates, the cached admin dashboard).

The shop runs without it when ``MICROSHOP_ANALYTICS_ENABLED=false`` (the gateway leaves it out of
``/api/health``, ``make dev`` and the chart do not start it): nothing else waits on analytics.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.di import Provide

from analytics.controllers import DashboardController
from analytics.dashboard import DashboardCache
from analytics.recorder import Recorder, ensure_indexes
from analytics.settings import Settings
from shopkit.app import Resources, create_service_app
from shopkit.broker import EventBus, create_broker
from shopkit.events import ALERT_SENT, ORDER_CREATED, ORDER_UPDATED, PRODUCT_UPDATED, STOCK_LOW, CloudEvent
from shopkit.settings import ServiceSettings


@dataclass
class Runtime:
    recorder: Recorder | None = None
    cache: DashboardCache | None = None

    @property
    def handlers(self) -> Recorder:
        # Built at start-up; the kit starts consumers only after that.
        assert self.recorder is not None
        return self.recorder


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    bus = EventBus(settings, create_broker(settings))
    runtime = Runtime()

    async def on_order_event(event: CloudEvent) -> None:
        await runtime.handlers.on_order_event(event)

    async def on_stock_low(event: CloudEvent) -> None:
        await runtime.handlers.on_stock_low(event)

    async def on_product_updated(event: CloudEvent) -> None:
        await runtime.handlers.on_product_updated(event)

    async def on_alert_sent(event: CloudEvent) -> None:
        await runtime.handlers.on_alert_sent(event)

    bus.subscribe(ORDER_CREATED, on_order_event)
    bus.subscribe(ORDER_UPDATED, on_order_event)
    bus.subscribe(STOCK_LOW, on_stock_low)
    bus.subscribe(PRODUCT_UPDATED, on_product_updated)
    bus.subscribe(ALERT_SENT, on_alert_sent)

    async def startup(resources: Resources) -> None:
        assert resources.mongo_client is not None and resources.redis is not None
        db = resources.db
        await ensure_indexes(db)
        cache = DashboardCache(
            resources.redis, db, namespace=settings.namespace,
            max_staleness_seconds=settings.dashboard_max_staleness_seconds,
            top_limit=settings.top_products_limit, revenue_days=settings.revenue_days,
        )
        runtime.cache = cache
        runtime.recorder = Recorder(resources.mongo_client, db, cache.invalidate)

    def provide_cache() -> DashboardCache:
        assert runtime.cache is not None
        return runtime.cache

    return create_service_app(
        settings,
        title="microshop analytics",
        description="Aggregates of orders, revenue, products and stock, fed by events; the admin dashboard.",
        route_handlers=[DashboardController],
        use_redis=True,
        bus=bus,
        on_startup=[startup],
        dependencies={"dashboard_cache": Provide(provide_cache, sync_to_thread=False)},
    )
