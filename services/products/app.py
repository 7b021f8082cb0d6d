"""``create_app``: the products service (catalog HTTP API + stock reservation consumers + outbox relay)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from products.cache import ProductCache
from products.catalog import Catalog
from products.controllers import ProductController
from products.models import Product, Reservation
from products.reservations import RELEASING_STATUSES, StockReservations
from products.seed import seed_demo_catalog
from products.settings import Settings
from shopkit.app import Consume, Resources, Service, Uses
from shopkit.contracts.events import OrderCreated, OrderUpdated, ProductUpdated, StockLow, StockRejected, StockReserved
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    catalog: Catalog
    reservations: StockReservations


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        await res.documents.configure_database([Product, Reservation])
        catalog = Catalog(res.client, res.db, ProductCache(res.redis, config.namespace, config.cache_ttl_seconds),
                          res.outbox)
        if config.seed_demo:
            await seed_demo_catalog(catalog)
        yield Deps(catalog, StockReservations(res.client, res.db, catalog.after_commit))

    return Service(
        Settings, config, build=build, routes=[ProductController],
        consumes={OrderCreated: lambda deps: deps.reservations.reserve,
                  # Bound to the statuses it acts on only: the other order_updated events never reach it.
                  OrderUpdated: Consume(lambda deps: deps.reservations.release, only=RELEASING_STATUSES)},
        publishes=(StockReserved, StockRejected, ProductUpdated, StockLow),
        # Serves without Redis (the cache falls back to MongoDB) and without RabbitMQ (the outbox holds events).
        uses=Uses(redis=True, events=True, outbox=True, ready_without=frozenset({"redis", "broker"})),
        title="microshop products",
        description="The catalog (public reads, admin writes) and stock reservations for the order saga.",
    ).app()
