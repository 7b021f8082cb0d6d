"""``create_app``: the orders service (HTTP API + stock reply consumers + outbox relay)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from orders.catalog import CatalogClient
from orders.controllers import OrderController
from orders.models import BY_CUSTOMER_NEWEST
from orders.saga import OrderSaga
from orders.service import ORDERS, OrderBook
from orders.settings import Settings
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import StockRejected, StockReserved
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    book: OrderBook
    saga: OrderSaga


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()

    @contextlib.asynccontextmanager
    async def build(res: Resources) -> AsyncIterator[Deps]:
        await res.db[ORDERS].create_index(BY_CUSTOMER_NEWEST, name="by_customer_newest")
        catalog = CatalogClient(settings.products_url, settings.catalog_timeout_seconds)
        await catalog.start()
        try:
            book = OrderBook(res.client, res.db, catalog, res.outbox)
            yield Deps(book, OrderSaga(book))
            await book.placements.close()
        finally:
            await catalog.close()

    service = Service(
        settings,
        title="microshop orders",
        description="Orders: placement, the status state machine and the orders side of the order saga.",
        routes=[OrderController],
        deps=Deps,
        build=build,
        uses=Uses(events=True, outbox=True),
    )
    service.consume(StockReserved, lambda deps: deps.saga.settle)
    service.consume(StockRejected, lambda deps: deps.saga.settle)
    return service.app()
