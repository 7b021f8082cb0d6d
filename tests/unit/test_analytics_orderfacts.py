"""Order facts converge whatever the event order and however often an event comes (no network)."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.dashboard import confirmed_ratio
from analytics.orderfacts import OrderEvent, contribution, delta, merge
from shopkit.contracts.events import OrderCreated, OrderUpdated

T0 = datetime(2026, 11, 21, 23, 59, 58, tzinfo=UTC)
LINES = [{"product_id": "p1", "name": "Mug", "unit_price": 1250, "quantity": 2}]


def ev(status: str, old: str | None, seconds: int) -> tuple[OrderEvent, datetime]:
    data: dict[str, Any] = {"order_id": "o1", "customer_id": "c1", "items": LINES, "total": 2500, "currency": "EUR"}
    at = T0 + timedelta(seconds=seconds)
    if old is None:
        return OrderCreated.model_validate({**data, "status": status, "created_at": at}), at
    return OrderUpdated.model_validate({**data, "old_status": old, "new_status": status, "status": status}), at


def run(events: list[tuple[OrderEvent, datetime]]) -> tuple[dict[str, Any], Counter[str]]:
    facts: dict[str, Any] | None = None
    totals: Counter[str] = Counter()
    for data, at in events:
        new = merge(facts, data, at)
        totals.update(delta(facts, new))
        facts = new
    assert facts is not None
    return facts, totals


def test_confirmed_then_cancelled_converges_in_every_order_and_with_replays() -> None:
    events = [ev("pending", None, 0), ev("confirmed", "pending", 1), ev("cancelled", "confirmed", 5)]
    results = set()
    for perm in itertools.permutations(events):
        facts, totals = run([*perm, *perm])  # every event twice
        assert totals == contribution(facts)  # the counters are exactly the order's contribution
        results.add(tuple(sorted((k, v) for k, v in totals.items() if v)))
    assert results == {(("saga:confirmed", 1), ("status:cancelled", 1))}


def test_revenue_counts_on_the_utc_day_of_confirmation_even_when_shipped_arrives_first() -> None:
    events = [ev("shipped", "confirmed", 3), ev("pending", None, 0), ev("confirmed", "pending", 1)]
    facts, totals = run(events)
    # Confirmed at 23:59:59 on the 21st; shipped after midnight must not move the revenue to the 22nd.
    assert facts["status"] == "shipped"
    assert {k: v for k, v in totals.items() if v} == {
        "status:shipped": 1, "saga:confirmed": 1, "revenue:2026-11-21:EUR": 2500, "product:p1": 2}


def test_rejected_order_has_no_revenue_and_counts_against_the_ratio() -> None:
    _facts, totals = run([ev("rejected", "pending", 1), ev("pending", None, 0)])
    assert {k: v for k, v in totals.items() if v} == {"status:rejected": 1, "saga:rejected": 1}
    assert confirmed_ratio(3, 1) == 0.75 and confirmed_ratio(0, 0) is None
