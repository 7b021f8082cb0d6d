"""Caps that keep one customer from reserving the whole stock (``MICROSHOP_ORDER_MAX_*``).

Per line (422 ``line-quantity-limit``), per order (422 ``order-quantity-limit``), and per customer and
product over their open orders including the new one (409 ``outstanding-quantity-limit``; admins are
exempt, 0 turns it off). The outstanding check and the placement run one at a time per customer in a
replica (:class:`PerCustomer`); orders racing on different replicas can each pass it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from orders.settings import Settings
from orders.statuses import OrderStatus
from shopkit.contracts.orders import CreateOrderRequest
from shopkit.errors import ProblemError

OPEN = [OrderStatus.PENDING.value, OrderStatus.CONFIRMED.value]


def _over(status: int, type_: str, title: str, detail: str, errors: list[dict[str, str]]) -> ProblemError:
    return ProblemError(status, detail, type_=type_, title=title, errors=errors)


def _quantity_error(index: int, rule: str) -> dict[str, str]:
    return {"field": f"items[{index}].quantity", "rule": rule, "source": "body"}


@dataclass(frozen=True)
class OrderLimits:
    per_line: int = 20
    per_order: int = 50
    outstanding_per_product: int = 50

    @classmethod
    def of(cls, settings: Settings) -> OrderLimits:
        return cls(settings.order_max_quantity_per_line, settings.order_max_quantity_per_order,
                   settings.order_max_outstanding_per_product)

    def check_request(self, req: CreateOrderRequest) -> None:
        """422 when a line or the whole order is over its cap."""
        errors = [_quantity_error(i, f"at most {self.per_line} per line")
                  for i, line in enumerate(req.items) if line.quantity > self.per_line]
        if errors:
            raise _over(422, "line-quantity-limit", "Quantity per order line over the limit",
                        f"at most {self.per_line} units of a product per order", errors)
        total = sum(line.quantity for line in req.items)
        if total > self.per_order:
            raise _over(422, "order-quantity-limit", "Quantity per order over the limit",
                        f"{total} units in this order; at most {self.per_order} per order",
                        [{"field": "items", "rule": f"at most {self.per_order} units in all", "source": "body"}])

    @property
    def caps_outstanding(self) -> bool:
        """``outstanding_per_product`` 0 turns the cap off (no look-up, no one-at-a-time placing)."""
        return self.outstanding_per_product > 0

    async def check_outstanding(self, orders: Any, customer_id: str, req: CreateOrderRequest) -> None:
        """409 when the customer's open orders and this one together hold too much of one product.

        Each open order that holds a product holds at least one unit of it, so reading at most ``cap``
        of them per product decides the check: the cost is bounded by the cap, not by the customer's
        history.
        """
        if not self.caps_outstanding:
            return
        cap = self.outstanding_per_product
        held: dict[str, int] = {}
        for product_id in {line.product_id for line in req.items}:
            held[product_id] = 0
            cursor = orders.find({"customer_id": customer_id, "status": {"$in": OPEN}, "items.product_id": product_id},
                                 {"items": 1}).limit(cap)
            async for doc in cursor:
                held[product_id] += sum(int(line["quantity"]) for line in doc["items"]
                                        if line["product_id"] == product_id)
        errors = [_quantity_error(i, f"{held[line.product_id]} already in open orders, "
                                     f"at most {self.outstanding_per_product} per product")
                  for i, line in enumerate(req.items)
                  if held[line.product_id] + line.quantity > self.outstanding_per_product]
        if errors:
            raise _over(409, "outstanding-quantity-limit", "Too much of a product in open orders",
                        f"at most {self.outstanding_per_product} units of a product in your open (pending or "
                        "confirmed, unshipped) orders", errors)


@dataclass
class PerCustomer:
    """One placement at a time per customer (in this process); locks live only while in use."""

    _locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, customer_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(customer_id, (asyncio.Lock(), 0))
        self._locks[customer_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[customer_id]
            if users == 1:
                del self._locks[customer_id]
            else:
                self._locks[customer_id] = (lock, users - 1)
