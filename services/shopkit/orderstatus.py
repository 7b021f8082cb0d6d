"""How far along the order state machine a status is, so late or replayed events never move an order back.

Order events travel on separate queues (``order_created`` and ``order_updated``) and may be
handled out of order. A status is only taken when it is further along than the one already
seen; statuses with the same rank exclude each other (confirmed/rejected; cancelled/delivered,
either of which may follow shipped).
"""

from __future__ import annotations

RANK: dict[str, int] = {
    "pending": 0,
    "confirmed": 1,
    "rejected": 1,
    "shipped": 2,
    "cancelled": 3,
    "delivered": 3,
}


def rank(status: str | None) -> int:
    """``-1`` for no status or one this service does not know (any known status beats it)."""
    return RANK.get(status or "", -1)


def is_newer(status: str, than: str | None) -> bool:
    return rank(status) > rank(than)


def older_than(status: str) -> list[str]:
    """The statuses an order may leave for ``status`` (for a guarded update's filter)."""
    return [s for s, r in RANK.items() if r < rank(status)]
