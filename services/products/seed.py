"""A small demo catalog for `make dev` (``MICROSHOP_SEED_DEMO=true``), written only into an empty catalog."""

from __future__ import annotations

import logging

from products.catalog import Catalog
from shopkit.contracts.products import CreateProductRequest
from shopkit.errors import ProblemError

log = logging.getLogger("products.seed")

DEMO_PRODUCTS: list[dict[str, object]] = [
    {"sku": "MUG-001", "name": "Ceramic Mug", "category": "kitchen", "price": 1299, "stock": 40,
     "description": "350 ml, dishwasher safe."},
    {"sku": "KETTLE-002", "name": "Electric Kettle", "category": "kitchen", "price": 3999, "stock": 12,
     "description": "1.7 l, auto shut-off."},
    {"sku": "TEE-003", "name": "Organic Cotton T-Shirt", "category": "apparel", "price": 1999, "stock": 60,
     "description": "Unisex, medium."},
    {"sku": "HOODIE-004", "name": "Zip Hoodie", "category": "apparel", "price": 4999, "stock": 8,
     "description": "Fleece-lined."},
    {"sku": "BOOK-005", "name": "Distributed Systems Notes", "category": "books", "price": 2950, "stock": 25,
     "description": "Paperback."},
    {"sku": "LAMP-006", "name": "Desk Lamp", "category": "home", "price": 3450, "stock": 4,
     "description": "LED, dimmable."},
]


async def seed_demo_catalog(catalog: Catalog) -> int:
    if not await catalog.is_empty():
        return 0
    created = 0
    for item in DEMO_PRODUCTS:
        try:
            await catalog.create(CreateProductRequest.model_validate(
                {"currency": "EUR", "low_stock_threshold": 5, **item}))
            created += 1
        except ProblemError:  # another replica seeded it at the same time
            continue
    log.info("seeded %d demo products", created)
    return created
