"""``create_app``: the products service (catalog HTTP API + stock reservation consumers + outbox relay)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.di import Provide

from products.cache import ProductCache
from products.catalog import Catalog
from products.controllers import ProductController
from products.models import Product, Reservation
from products.reservations import StockReservations
from products.seed import seed_demo_catalog
from products.settings import Settings
from shopkit.app import Resources, create_service_app
from shopkit.broker import EventBus, create_broker
from shopkit.events import ORDER_CREATED, ORDER_UPDATED, CloudEvent
from shopkit.settings import ServiceSettings


@dataclass
class Runtime:
    """What the handlers need, built at start-up (the kit starts consumers only after that)."""

    catalog: Catalog | None = None
    reservations: StockReservations | None = None


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    bus = EventBus(settings, create_broker(settings))
    runtime = Runtime()

    async def on_order_created(event: CloudEvent) -> None:
        assert runtime.reservations is not None
        await runtime.reservations.reserve(event)

    async def on_order_updated(event: CloudEvent) -> None:
        assert runtime.reservations is not None
        await runtime.reservations.release(event)

    bus.subscribe(ORDER_CREATED, on_order_created)
    bus.subscribe(ORDER_UPDATED, on_order_updated)

    async def startup(resources: Resources) -> None:
        assert resources.engine is not None and resources.mongo_client is not None and resources.redis is not None
        assert resources.relay is not None
        db = resources.db
        await resources.engine.configure_database([Product, Reservation])  # type: ignore[arg-type]
        cache = ProductCache(resources.redis, settings.namespace, settings.cache_ttl_seconds)
        catalog = Catalog(resources.mongo_client, db, cache, resources.relay)
        runtime.catalog = catalog
        runtime.reservations = StockReservations(resources.mongo_client, db, catalog.after_commit)
        if settings.seed_demo:
            await seed_demo_catalog(catalog)

    def provide_catalog() -> Catalog:
        assert runtime.catalog is not None
        return runtime.catalog

    return create_service_app(
        settings,
        title="microshop products",
        description="The catalog (public reads, admin writes) and stock reservations for the order saga.",
        route_handlers=[ProductController],
        use_redis=True,
        bus=bus,
        use_outbox=True,
        on_startup=[startup],
        dependencies={"catalog": Provide(provide_catalog, sync_to_thread=False)},
    )
