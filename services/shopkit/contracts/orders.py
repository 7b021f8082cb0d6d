"""Request bodies of the orders service (``/orders``, ``/orders/{id}/status``).

Only product ids and quantities come from the client: names and prices come from the catalog.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

MAX_LINES = 50
MAX_QUANTITY = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderLineRequest(_Strict):
    product_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY)


class CreateOrderRequest(_Strict):
    items: list[OrderLineRequest] = Field(min_length=1, max_length=MAX_LINES)

    @field_validator("items")
    @classmethod
    def _one_line_per_product(cls, v: list[OrderLineRequest]) -> list[OrderLineRequest]:
        ids = [line.product_id for line in v]
        if len(set(ids)) != len(ids):
            raise ValueError("each product may appear on one line only; add up the quantities")
        return v


class StatusChangeRequest(_Strict):
    """Admin fulfilment transitions; cancellation has its own endpoint."""

    status: Literal["shipped", "delivered"]
