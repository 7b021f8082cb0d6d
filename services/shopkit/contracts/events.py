"""The event catalogue: one pydantic model per event type, the only definition of what an event carries.

Producers build events from these models, the kit validates ``data`` against them before a handler
runs, and docs/asyncapi.json is generated from them. Readers are tolerant (unknown fields ignored;
only what a consumer cannot work without is required), so adding a field never breaks an older
consumer; removing or retyping one is a breaking change. Amounts are integer minor units, times UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Exchanges (topic, durable); the routing key of an event is its type, or its type and one field of its
# payload (``EventData.ROUTED_BY``: ``order_updated.cancelled``).
ORDER_EXCHANGE = "order_exchange"
PRODUCT_EXCHANGE = "product_exchange"
ALERT_EXCHANGE = "alert_exchange"

OrderStatusName = Literal["pending", "confirmed", "rejected", "cancelled", "shipped", "delivered"]


class EventData(BaseModel):
    """Base of every payload: its event type and exchange are class attributes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]
    EXCHANGE: ClassVar[str]
    ROUTED_BY: ClassVar[str | None] = None
    """A payload field whose value the routing key carries after the type (``order_updated.cancelled``), so a
    consumer that handles only some values binds to just those and is not sent the others. None: the type."""

    @classmethod
    def routing_key(cls, data: Mapping[str, Any]) -> str:
        """The routing key of an event of this type whose payload (as JSON) is ``data``."""
        if cls.ROUTED_BY is None:
            return cls.TYPE
        return f"{cls.TYPE}.{data[cls.ROUTED_BY]}"

    @classmethod
    def binding_keys(cls, only: Collection[str] | None = None) -> tuple[str, ...]:
        """A queue's binding keys for this type: all its events, or those whose ``ROUTED_BY`` is in ``only``.

        ``<type>.#`` matches ``<type>`` too (``#`` is zero or more words): an event published by a
        version that routed by the type alone still arrives.
        """
        if cls.ROUTED_BY is None:
            if only is not None:
                raise ValueError(f"{cls.TYPE} is routed by its type only: no subset to bind to")
            return (cls.TYPE,)
        if only is None:
            return (f"{cls.TYPE}.#",)
        if not only:
            raise ValueError("bind to at least one value")
        return tuple(f"{cls.TYPE}.{value}" for value in sorted(only))


# ---- orders -------------------------------------------------------------------------------------

class OrderLine(BaseModel):
    """A line of an order as priced when it was placed."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: str = Field(min_length=1)
    name: str = ""
    unit_price: int = Field(default=0, ge=0, description="minor units, at the time the order was placed")
    quantity: int = Field(ge=1)


class OrderCreated(EventData):
    """orders → products (reserve stock), alerts (order alert), analytics (counters)."""

    TYPE = "order_created"
    EXCHANGE = ORDER_EXCHANGE

    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    status: OrderStatusName = "pending"
    items: tuple[OrderLine, ...] = Field(min_length=1)
    total: int | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    created_at: datetime | None = None


class OrderUpdated(EventData):
    """orders → products (release on ``cancelled``, ``rejected``), alerts, analytics. ``status`` = ``new_status``."""

    TYPE = "order_updated"
    EXCHANGE = ORDER_EXCHANGE
    ROUTED_BY = "new_status"  # order_updated.<new_status>: products binds to the statuses it handles only

    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    old_status: OrderStatusName | None = None
    new_status: OrderStatusName
    status: OrderStatusName | None = None
    items: tuple[OrderLine, ...] = ()
    total: int | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    reason: str | None = None


# ---- products -----------------------------------------------------------------------------------

class ReservedLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class StockReserved(EventData):
    """products → orders: every line of the order is reserved (the order becomes ``confirmed``)."""

    TYPE = "stock_reserved"
    EXCHANGE = PRODUCT_EXCHANGE

    order_id: str = Field(min_length=1)
    customer_id: str | None = None
    items: tuple[ReservedLine, ...] = ()


class StockRejected(EventData):
    """products → orders: nothing was reserved (the order becomes ``rejected``)."""

    TYPE = "stock_rejected"
    EXCHANGE = PRODUCT_EXCHANGE

    order_id: str = Field(min_length=1)
    customer_id: str | None = None
    items: tuple[ReservedLine, ...] = ()
    reason: str = "insufficient-stock"
    product_id: str | None = Field(default=None, description="the first line that could not be reserved")


class ProductUpdated(EventData):
    """products → analytics: a product's current state after any change (admin write or stock change)."""

    TYPE = "product_updated"
    EXCHANGE = PRODUCT_EXCHANGE

    product_id: str = Field(min_length=1)
    id: str = Field(min_length=1, description="the same as product_id (the catalog's own field name)")
    sku: str = ""
    name: str = ""
    description: str = ""
    category: str = ""
    price: int = Field(default=0, ge=0)
    currency: str = ""
    stock: int = Field(ge=0)
    low_stock_threshold: int = Field(ge=0)
    deleted: bool = False


class StockLow(EventData):
    """products → alerts (admin alert), analytics: a stock change crossed the product's low threshold."""

    TYPE = "stock_low"
    EXCHANGE = PRODUCT_EXCHANGE

    product_id: str = Field(min_length=1)
    sku: str | None = None
    name: str = ""
    stock: int = Field(ge=0)
    low_stock_threshold: int | None = Field(default=None, ge=0)


# ---- alerts -------------------------------------------------------------------------------------

class AlertSent(EventData):
    """alerts → analytics: an alert was stored for a customer or for the admins."""

    TYPE = "alert_sent"
    EXCHANGE = ALERT_EXCHANGE

    alert_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    recipient: Literal["customer", "admins"]
    customer_id: str | None = None
    order_id: str | None = None
    product_id: str | None = None
    status: str | None = None


CATALOGUE: dict[str, type[EventData]] = {
    model.TYPE: model
    for model in (OrderCreated, OrderUpdated, StockReserved, StockRejected, ProductUpdated, StockLow, AlertSent)
}
"""Every event type of the shop and its payload model."""
