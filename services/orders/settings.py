from __future__ import annotations

from pydantic import Field

from shopkit import registry
from shopkit.contracts.orders import MAX_LINES, MAX_QUANTITY
from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "orders"
    port: int = Field(default=registry.get("orders").port, ge=1, le=65535)

    # Where names and prices come from (the same variable the gateway routes /api/products with).
    products_url: str = f"http://127.0.0.1:{registry.get('products').port}"
    catalog_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # How long a product's name and price read from the catalog are reused (0: every order asks).
    catalog_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # A pending order with no stock reply after this long is rejected (reason ``timeout``) by the sweeper;
    # products then releases anything it reserved for it. Checked every ``order_sweep_seconds``.
    order_pending_timeout_seconds: float = Field(default=300.0, gt=0, le=7 * 86400)
    order_sweep_seconds: float = Field(default=15.0, gt=0, le=3600)

    # No one hoards the stock (orders.limits): units of a product per order line, units per order, and units
    # of one product in one customer's open (pending or confirmed, unshipped) orders, the new one included.
    order_max_quantity_per_line: int = Field(default=20, ge=1, le=MAX_QUANTITY)
    order_max_quantity_per_order: int = Field(default=50, ge=1, le=MAX_QUANTITY * MAX_LINES)
    order_max_outstanding_per_product: int = Field(default=50, ge=0, le=1_000_000)  # 0: no cap
