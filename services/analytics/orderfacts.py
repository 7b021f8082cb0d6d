"""What analytics knows about one order, and what that order adds to the aggregates (pure functions).

Facts merge from an order's events in any order and idempotently (the status only moves forward,
amounts and lines come from the first event carrying them), so redeliveries and reordering change
nothing. The aggregates are the sum of :func:`contribution` over orders; a handler applies
``contribution(new) - contribution(old)`` in the transaction that stores ``new``, so they always equal
what the stored orders say. The definitions (revenue, top products, ``confirmed_ratio``) are in
docs/alerts-analytics.md.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from shopkit.contracts.events import OrderCreated, OrderUpdated
from shopkit.orderstatus import rank

COUNTED = frozenset({"confirmed", "shipped", "delivered"})
SAGA_CONFIRMED = "confirmed"
SAGA_REJECTED = "rejected"
STATUSES = ("pending", "confirmed", "rejected", "cancelled", "shipped", "delivered")


OrderEvent = OrderCreated | OrderUpdated


def current_status(data: OrderEvent) -> str:
    return data.new_status if isinstance(data, OrderUpdated) else data.status


def merge(facts: dict[str, Any] | None, data: OrderEvent, at: datetime) -> dict[str, Any]:
    """The order's facts after one more event (``at``: the event's time). Never mutates ``facts``."""
    new: dict[str, Any] = dict(facts or {})
    status = current_status(data)
    old_status = data.old_status if isinstance(data, OrderUpdated) else None
    if rank(status) > rank(new.get("status")):
        new["status"] = status
    if new.get("total") is None and data.total is not None:
        new["total"] = data.total
    if not new.get("currency") and data.currency:
        new["currency"] = data.currency
    if not new.get("items") and data.items:
        new["items"] = [{"product_id": line.product_id, "name": line.name, "quantity": line.quantity}
                        for line in data.items]
    if status in COUNTED:
        first = new.get("confirmed_at")
        if first is None or at < first:
            new["confirmed_at"] = at
    if new.get("saga") is None:
        if status in COUNTED or old_status == SAGA_CONFIRMED:
            new["saga"] = SAGA_CONFIRMED
        elif status == SAGA_REJECTED:
            new["saga"] = SAGA_REJECTED
    return new


def revenue_key(day: str, currency: str) -> str:
    return f"revenue:{day}:{currency}"


def contribution(facts: dict[str, Any] | None) -> Counter[str]:
    """What one order adds to each counter (``status:<s>``, ``revenue:<day>:<cur>``, ``product:<id>``, ``saga:<x>``)."""
    out: Counter[str] = Counter()
    if not facts or not facts.get("status"):
        return out
    status = facts["status"]
    out[f"status:{status}"] += 1
    if facts.get("saga"):
        out[f"saga:{facts['saga']}"] += 1
    if status in COUNTED:
        confirmed_at: datetime | None = facts.get("confirmed_at")
        if confirmed_at is not None and facts.get("total") is not None and facts.get("currency"):
            out[revenue_key(confirmed_at.date().isoformat(), facts["currency"])] += int(facts["total"])
        for line in facts.get("items") or []:
            out[f"product:{line['product_id']}"] += int(line["quantity"])
    return out


def delta(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, int]:
    """``contribution(new) - contribution(old)``, without the zero entries."""
    before, after = contribution(old), contribution(new)
    keys = set(before) | set(after)
    return {k: after[k] - before[k] for k in sorted(keys) if after[k] != before[k]}


def product_names(facts: dict[str, Any]) -> dict[str, str]:
    return {line["product_id"]: line.get("name", "") for line in facts.get("items") or []}
