"""An EventBus and a database of their own for tests that drive the kit's handlers directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from products.models import Product
from products.reservations import StockReservations
from shopkit.contracts.events import OrderCreated, OrderLine, OrderUpdated
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import EventBus, create_broker
from shopkit.settings import ServiceSettings


def bus_for(service: str) -> EventBus:
    """The EventBus of ``service`` in a fresh namespace (FastStream's TestRabbitBroker or a real broker)."""
    settings = ServiceSettings(service_name=service, namespace=f"h{uuid.uuid4().hex[:6]}.")
    return EventBus(settings, create_broker(settings), retry_backoff_seconds=0)


def order_created(order_id: str, product_id: str, quantity: int) -> CloudEvent:
    """An order of ``quantity`` units of one product at 1.00 EUR each."""
    return new_event(OrderCreated(order_id=order_id, customer_id="c1", total=100 * quantity, currency="EUR",
                                  items=(OrderLine(product_id=product_id, unit_price=100, quantity=quantity),)),
                     "/tests")


async def no_cache(_: Iterable[str]) -> None:
    """StockReservations' cache invalidation, for tests without a Redis cache."""
    return None


async def stocked_product(db: AsyncDatabase[Any], sku: str, stock: int, low_stock_threshold: int) -> str:
    """A product with ``stock`` units in products' database; its id."""
    product = Product(sku=sku, name="P", category="c", price=100, currency="EUR", stock=stock,
                      low_stock_threshold=low_stock_threshold)
    await db["products"].insert_one(product.model_dump_doc())
    return str(product.id)


def reserving_bus(client: AsyncMongoClient[Any], db: AsyncDatabase[Any]) -> EventBus:
    """products' bus with its two saga handlers: order_created reserves, order_updated releases."""
    reservations = StockReservations(client, db, no_cache)
    bus = bus_for("products")
    bus.subscribe(OrderCreated, reservations.reserve)
    bus.subscribe(OrderUpdated, reservations.release)
    return bus
