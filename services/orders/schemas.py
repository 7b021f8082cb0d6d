"""Response shapes of the orders API (docs/architecture.md, "Routes of the services")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class OrderLineOut(BaseModel):
    product_id: str
    name: str
    unit_price: int
    quantity: int


class OrderOut(BaseModel):
    id: str
    customer_id: str
    status: str
    items: list[OrderLineOut]
    total: int
    currency: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> OrderOut:
        return cls(
            id=str(doc["_id"]), customer_id=doc["customer_id"], status=doc["status"],
            items=[OrderLineOut(**{k: line[k] for k in ("product_id", "name", "unit_price", "quantity")})
                   for line in doc["items"]],
            total=doc["total"], currency=doc["currency"], created_at=doc["created_at"],
            updated_at=doc["updated_at"],
        )


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int
