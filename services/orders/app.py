"""``create_app``: the orders service (HTTP API + stock reply consumers + outbox relay)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from orders.catalog import CatalogClient
from orders.controllers import OrderController
from orders.limits import OrderLimits
from orders.models import BY_CUSTOMER_NEWEST
from orders.saga import OrderSaga
from orders.service import BY_IDEMPOTENCY_KEY, IDEMPOTENCY_INDEX_OPTIONS, ORDERS, OrderBook
from orders.settings import Settings
from orders.sweeper import BY_STATUS_CREATED, PendingSweeper
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import OrderCreated, OrderUpdated, StockRejected, StockReserved
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    book: OrderBook
    saga: OrderSaga


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        await res.db[ORDERS].create_index(BY_CUSTOMER_NEWEST, name="by_customer_newest")
        await res.db[ORDERS].create_index(BY_IDEMPOTENCY_KEY, **IDEMPOTENCY_INDEX_OPTIONS)
        await res.db[ORDERS].create_index(BY_STATUS_CREATED, name="by_status_created")
        catalog = CatalogClient(config.products_url, config.catalog_timeout_seconds, config.catalog_cache_seconds)
        await catalog.start()
        book = OrderBook(res.client, res.db, catalog, res.outbox, batch_max_size=config.batch_max_size,
                         batch_linger_seconds=config.batch_linger_ms / 1000, limits=OrderLimits.of(config))
        sweeper = PendingSweeper(book, timeout_seconds=config.order_pending_timeout_seconds,
                                 every_seconds=config.order_sweep_seconds)
        sweeper.start()
        try:
            yield Deps(book, OrderSaga(book))
        finally:
            await sweeper.stop()
            await book.placements.close()
            await catalog.close()

    return Service(
        Settings, config, build=build, routes=[OrderController],
        # Both replies share their batches: one transaction settles the confirmed and the rejected.
        consumes={(StockReserved, StockRejected): lambda deps: deps.saga.settle},
        publishes=(OrderCreated, OrderUpdated),
        # Serves without RabbitMQ: the outbox holds the events until it is back.
        uses=Uses(events=True, outbox=True, ready_without=frozenset({"broker"})),
        title="microshop orders",
        description="Orders: placement, the status state machine and the orders side of the order saga.",
    ).app()
