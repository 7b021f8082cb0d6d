"""``create_app``: the products service (catalog HTTP API + stock reservation consumers + outbox relay)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from products.cache import ProductCache
from products.catalog import Catalog
from products.controllers import ProductController
from products.models import Product, Reservation
from products.reservations import StockReservations
from products.seed import seed_demo_catalog
from products.settings import Settings
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import OrderCreated, OrderUpdated
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    catalog: Catalog
    reservations: StockReservations


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()

    @contextlib.asynccontextmanager
    async def build(res: Resources) -> AsyncIterator[Deps]:
        await res.odm.configure_database([Product, Reservation])  # type: ignore[arg-type]
        cache = ProductCache(res.cache, settings.namespace, settings.cache_ttl_seconds)
        catalog = Catalog(res.client, res.db, cache, res.outbox)
        if settings.seed_demo:
            await seed_demo_catalog(catalog)
        yield Deps(catalog, StockReservations(res.client, res.db, catalog.after_commit))

    service = Service(
        settings,
        title="microshop products",
        description="The catalog (public reads, admin writes) and stock reservations for the order saga.",
        routes=[ProductController],
        deps=Deps,
        build=build,
        uses=Uses(redis=True, events=True, outbox=True),
    )
    service.consume(OrderCreated, lambda deps: deps.reservations.reserve)
    service.consume(OrderUpdated, lambda deps: deps.reservations.release)
    return service.app()
