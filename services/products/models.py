"""Stored documents of the products database."""

from __future__ import annotations

from datetime import datetime

from shopkit.mongo import EmbeddedModel, Field, Model, utcnow


class Product(Model):
    sku: str = Field(unique=True)
    name: str
    description: str = ""
    category: str = Field(index=True)
    price: int  # integer minor units
    currency: str
    stock: int  # never below 0: every decrement is a guarded update
    low_stock_threshold: int
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {"collection": "products"}


class ReservedLine(EmbeddedModel):
    product_id: str
    quantity: int


class Reservation(Model):
    """What the saga did for one order, keyed by the order id.

    ``reserved``: stock is held; ``released``: it was given back after a cancel;
    ``rejected``: nothing was taken; ``cancelled``: the cancel arrived before the order,
    so the order must never take stock.
    """

    id: str = Field(primary_field=True)
    status: str
    lines: list[ReservedLine] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {"collection": "reservations"}
