"""Unit tests of the orders domain: the transition table and the request contract."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from orders.limits import OrderLimits, PerCustomer
from orders.saga import target_of
from orders.statuses import TERMINAL, TRANSITIONS, Actor, OrderStatus, can_transition
from shopkit.contracts.events import StockRejected, StockReserved
from shopkit.contracts.orders import MAX_LINES, CreateOrderRequest, StatusChangeRequest
from shopkit.errors import ProblemError


@pytest.mark.parametrize(("current", "target", "actor"), [
    ("pending", "confirmed", Actor.SAGA),
    ("pending", "rejected", Actor.SAGA),
    ("pending", "cancelled", Actor.OWNER),
    ("confirmed", "cancelled", Actor.OWNER),
    ("confirmed", "shipped", Actor.ADMIN),
    ("shipped", "delivered", Actor.ADMIN),
])
def test_allowed_transitions(current: str, target: str, actor: Actor) -> None:
    assert can_transition(current, target, actor)


@pytest.mark.parametrize(("current", "target", "actor"), [
    ("pending", "shipped", Actor.ADMIN),
    ("confirmed", "delivered", Actor.ADMIN),
    ("shipped", "cancelled", Actor.OWNER),
    ("cancelled", "cancelled", Actor.OWNER),
    ("rejected", "confirmed", Actor.SAGA),
    ("cancelled", "confirmed", Actor.SAGA),  # a late stock reply never revives a cancelled order
    ("pending", "confirmed", Actor.OWNER),  # customers cannot confirm their own orders
    ("confirmed", "shipped", Actor.OWNER),
    ("delivered", "shipped", Actor.ADMIN),
    ("pending", "nonsense", Actor.ADMIN),
])
def test_illegal_transitions(current: str, target: str, actor: Actor) -> None:
    assert not can_transition(current, target, actor)


def test_terminal_statuses() -> None:
    assert {OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.DELIVERED} == TERMINAL
    assert all(frm not in TERMINAL for frm, _ in TRANSITIONS)


def test_stock_replies_map_to_statuses() -> None:
    assert target_of(StockReserved(order_id="o1")) is OrderStatus.CONFIRMED
    assert target_of(StockRejected(order_id="o1")) is OrderStatus.REJECTED
    assert StockReserved.model_validate({"order_id": "o1", "extra": 1}).order_id == "o1"  # tolerant reader
    with pytest.raises(ValidationError):
        StockReserved.model_validate({"order_id": ""})


def test_order_request_rules() -> None:
    ok = CreateOrderRequest.model_validate({"items": [{"product_id": "abc", "quantity": 2}]})
    assert ok.items[0].quantity == 2
    bad = [
        {"items": []},
        {"items": [{"product_id": "abc", "quantity": 0}]},
        {"items": [{"product_id": "abc", "quantity": 1.5}]},
        {"items": [{"product_id": "abc", "quantity": "2"}]},
        {"items": [{"product_id": "abc", "quantity": 1, "unit_price": 1}]},
        {"items": [{"product_id": "abc", "quantity": 1}, {"product_id": "abc", "quantity": 1}]},
        {"items": [{"product_id": f"p{i}", "quantity": 1} for i in range(MAX_LINES + 1)]},
        {"items": [{"product_id": "../x", "quantity": 1}]},
    ]
    for body in bad:
        with pytest.raises(ValidationError):
            CreateOrderRequest.model_validate(body)
    assert StatusChangeRequest.model_validate({"status": "shipped"}).status == "shipped"
    with pytest.raises(ValidationError):
        StatusChangeRequest.model_validate({"status": "cancelled"})


async def test_placements_of_one_customer_run_one_at_a_time_and_leave_no_lock_behind() -> None:
    placing = PerCustomer()
    inside: list[str] = []
    overlap: list[bool] = []

    async def place(customer: str) -> None:
        async with placing.one_at_a_time(customer):
            overlap.append(customer in inside)
            inside.append(customer)
            await asyncio.sleep(0.01)
            inside.remove(customer)

    await asyncio.gather(*(place(c) for c in ("a", "a", "a", "b", "b")))
    assert overlap == [False] * 5  # never two placements of one customer at once
    assert placing._locks == {}  # nothing kept for customers not placing right now


@pytest.mark.parametrize(("quantities", "refusal"), [
    ((2, 3), None),
    ((4, 4, 2), None),  # exactly the caps
    ((5,), "line-quantity-limit"),
    ((1, 5, 5), "line-quantity-limit"),
    ((4, 4, 3), "order-quantity-limit"),
])
def test_lines_and_orders_over_their_caps_are_refused(quantities: tuple[int, ...], refusal: str | None) -> None:
    limits = OrderLimits(per_line=4, per_order=10, outstanding_per_product=100)
    req = CreateOrderRequest.model_validate({"items": [{"product_id": f"p{i}", "quantity": q}
                                                       for i, q in enumerate(quantities)]})
    if refusal is None:
        limits.check_request(req)
        return
    with pytest.raises(ProblemError) as refused:
        limits.check_request(req)
    assert (refused.value.status_code, refused.value.type_) == (422, refusal)


async def test_an_outstanding_cap_of_zero_is_off_and_reads_nothing() -> None:
    from orders.limits import OrderLimits
    from shopkit.contracts.orders import CreateOrderRequest

    class NoDatabase:
        def find(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the cap is off: no look-up")

    req = CreateOrderRequest.model_validate({"items": [{"product_id": "p1", "quantity": 5}]})
    off = OrderLimits(outstanding_per_product=0)
    assert not off.caps_outstanding
    await off.check_outstanding(NoDatabase(), "c1", req)
    assert OrderLimits().caps_outstanding
