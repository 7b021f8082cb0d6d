"""Stored documents of the orders database."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING

from shopkit.mongo import EmbeddedModel, Field, Model, utcnow


class OrderLine(EmbeddedModel):
    product_id: str
    name: str  # copied from the catalog at order time
    unit_price: int  # integer minor units, from the catalog at order time
    quantity: int


class Order(Model):
    customer_id: str
    status: str
    items: list[OrderLine]
    total: int
    currency: str
    correlation_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {"collection": "orders"}


# "My orders, newest first" (created by the startup hook).
BY_CUSTOMER_NEWEST = [("customer_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
