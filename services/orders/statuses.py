"""Order statuses and the one table that says which transitions exist and who may make them."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


class Actor(StrEnum):
    SAGA = "saga"  # the stock reply from the products service
    OWNER = "owner"  # the customer who placed the order (or an admin on their behalf)
    ADMIN = "admin"  # fulfilment


S = OrderStatus
# (from, to) -> who may make the transition. Anything not listed is illegal (409).
TRANSITIONS: dict[tuple[OrderStatus, OrderStatus], frozenset[Actor]] = {
    (S.PENDING, S.CONFIRMED): frozenset({Actor.SAGA}),
    (S.PENDING, S.REJECTED): frozenset({Actor.SAGA}),
    (S.PENDING, S.CANCELLED): frozenset({Actor.OWNER}),
    (S.CONFIRMED, S.CANCELLED): frozenset({Actor.OWNER}),
    (S.CONFIRMED, S.SHIPPED): frozenset({Actor.ADMIN}),
    (S.SHIPPED, S.DELIVERED): frozenset({Actor.ADMIN}),
}

TERMINAL: frozenset[OrderStatus] = frozenset(
    s for s in OrderStatus if not any(frm == s for frm, _ in TRANSITIONS)
)


def can_transition(current: str, target: str, actor: Actor) -> bool:
    try:
        key = (OrderStatus(current), OrderStatus(target))
    except ValueError:
        return False
    return actor in TRANSITIONS.get(key, frozenset())
