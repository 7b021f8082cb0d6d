"""Response shapes of the products API (docs/architecture.md, "Routes of the services")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

SortKey = Literal["name", "-name", "price", "-price", "newest", "oldest", "stock", "-stock"]


class ProductOut(BaseModel):
    id: str
    sku: str
    name: str
    description: str
    category: str
    price: int
    currency: str
    stock: int
    low_stock_threshold: int

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ProductOut:
        return cls(
            id=str(doc["_id"]), sku=doc["sku"], name=doc["name"], description=doc.get("description", ""),
            category=doc["category"], price=doc["price"], currency=doc["currency"], stock=doc["stock"],
            low_stock_threshold=doc["low_stock_threshold"],
        )


class ProductPage(BaseModel):
    items: list[ProductOut]
    total: int
    limit: int
    offset: int
