"""``create_app``: the orders service (HTTP API + stock reply consumers + outbox relay)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.di import Provide

from orders.catalog import CatalogClient
from orders.controllers import OrderController
from orders.models import BY_CUSTOMER_NEWEST
from orders.saga import OrderSaga
from orders.service import ORDERS, OrderBook
from orders.settings import Settings
from shopkit.app import Resources, create_service_app
from shopkit.broker import EventBus, create_broker
from shopkit.events import STOCK_REJECTED, STOCK_RESERVED, CloudEvent
from shopkit.settings import ServiceSettings


@dataclass
class Runtime:
    """What the handlers need, built at start-up (the kit starts consumers only after that)."""

    book: OrderBook | None = None
    saga: OrderSaga | None = None
    catalog: CatalogClient | None = None


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    bus = EventBus(settings, create_broker(settings))
    runtime = Runtime()

    async def on_stock_reply(event: CloudEvent) -> None:
        assert runtime.saga is not None
        await runtime.saga.settle(event)

    bus.subscribe(STOCK_RESERVED, on_stock_reply)
    bus.subscribe(STOCK_REJECTED, on_stock_reply)

    async def startup(resources: Resources) -> None:
        assert resources.mongo_client is not None and resources.relay is not None
        db = resources.db
        await db[ORDERS].create_index(BY_CUSTOMER_NEWEST, name="by_customer_newest")
        catalog = CatalogClient(settings.products_url, settings.catalog_timeout_seconds)
        await catalog.start()
        book = OrderBook(resources.mongo_client, db, catalog, resources.relay)
        runtime.catalog, runtime.book, runtime.saga = catalog, book, OrderSaga(book)

    async def shutdown(resources: Resources) -> None:
        if runtime.catalog is not None:
            await runtime.catalog.close()

    def provide_book() -> OrderBook:
        assert runtime.book is not None
        return runtime.book

    return create_service_app(
        settings,
        title="microshop orders",
        description="Orders: placement, the status state machine and the orders side of the order saga.",
        route_handlers=[OrderController],
        bus=bus,
        use_outbox=True,
        on_startup=[startup],
        on_shutdown=[shutdown],
        dependencies={"book": Provide(provide_book, sync_to_thread=False)},
    )
