"""Unit tests of the products domain: reservation helpers, list filters and the request contracts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from products.catalog import ListQuery, crossed_low_threshold
from products.reservations import REJECTED, RESERVED, decide, merge_lines
from shopkit.contracts.events import OrderCreated, OrderUpdated, ReservedLine
from shopkit.contracts.products import CreateProductRequest, StockAdjustmentRequest, UpdateProductRequest


def test_merge_lines_adds_quantities_and_orders_by_product() -> None:
    lines = [ReservedLine(product_id="b", quantity=1), ReservedLine(product_id="a", quantity=2),
             ReservedLine(product_id="b", quantity=3)]
    assert merge_lines(lines) == [("a", 2), ("b", 4)]


def test_a_batch_is_decided_in_arrival_order_against_the_running_stock() -> None:
    stock = {"a": 3, "b": 1}
    orders = [("o1", [("a", 2)]), ("o2", [("a", 2)]),  # o2 finds only 1 left
              ("o3", [("a", 1), ("b", 1)]), ("o4", [("b", 1)]), ("o5", [("zz", 1)])]
    assert decide(orders, stock) == [("o1", RESERVED, None), ("o2", REJECTED, "a"), ("o3", RESERVED, None),
                                     ("o4", REJECTED, "b"), ("o5", REJECTED, "zz")]
    assert stock == {"a": 0, "b": 0}  # a rejected order takes nothing, not even its available lines


def test_a_multi_line_order_short_on_one_line_takes_nothing() -> None:
    stock = {"a": 5, "b": 0}
    assert decide([("o1", [("a", 1), ("b", 1)])], stock) == [("o1", REJECTED, "b")]
    assert stock == {"a": 5, "b": 0}


@pytest.mark.parametrize(("before", "after", "threshold", "crossed"), [
    (10, 5, 5, True),
    (6, 5, 5, True),
    (5, 4, 5, False),  # already at or below: alerted when it crossed
    (10, 6, 5, False),
    (1, 0, 0, True),
    (12, 10, 5, False),
])
def test_low_stock_fires_once_when_crossing(before: int, after: int, threshold: int, crossed: bool) -> None:
    assert crossed_low_threshold(before, after, threshold) is crossed


def test_list_filter_escapes_search_and_combines_filters() -> None:
    f = ListQuery(q="a.b*", category="books", min_price=100, max_price=200, in_stock=True).filter()
    assert f == {"name": {"$regex": r"a\.b\*", "$options": "i"}, "category": "books",
                 "price": {"$gte": 100, "$lte": 200}, "stock": {"$gt": 0}}
    assert ListQuery(in_stock=False).filter() == {"stock": 0}
    assert ListQuery().filter() == {}


def test_event_payloads_are_validated() -> None:
    good = {"order_id": "o", "customer_id": "c", "items": [{"product_id": "p", "unit_price": 5, "quantity": 1}],
            "total": 5, "currency": "EUR", "created_at": "2026-11-27T10:00:00Z"}
    assert OrderCreated.model_validate(good).items[0].quantity == 1
    for bad in ({"items": []}, {"items": [{"product_id": "p", "unit_price": 5, "quantity": 0}]}, {"order_id": ""}):
        with pytest.raises(ValidationError):
            OrderCreated.model_validate({**good, **bad})
    update = {"order_id": "o", "customer_id": "c", "old_status": "confirmed", "new_status": "cancelled",
              "status": "cancelled", "total": 5, "currency": "EUR"}
    assert OrderUpdated.model_validate(update).new_status == "cancelled"
    with pytest.raises(ValidationError):
        OrderUpdated.model_validate({**update, "new_status": "lost"})


BASE = {"sku": "SKU-1", "name": "Mug", "category": "kitchen", "price": 1299, "currency": "EUR", "stock": 3,
        "low_stock_threshold": 1}


def test_create_product_contract() -> None:
    assert CreateProductRequest.model_validate(BASE).price == 1299
    for field, value in [("price", 12.99), ("price", "1299"), ("price", -1), ("currency", "eur"), ("stock", -1),
                         ("name", "   "), ("sku", "has space"), ("unknown", 1)]:
        with pytest.raises(ValidationError):
            CreateProductRequest.model_validate({**BASE, field: value})


def test_update_product_contract() -> None:
    assert UpdateProductRequest.model_validate({"price": 5}).model_fields_set == {"price"}
    for body in ({}, {"stock": 5}, {"price": None}, {"price": 1.5}):
        with pytest.raises(ValidationError):
            UpdateProductRequest.model_validate(body)


def test_stock_adjustment_contract() -> None:
    assert StockAdjustmentRequest.model_validate({"delta": -3}).delta == -3
    for body in ({"delta": 0}, {"delta": 1.0}, {}):
        with pytest.raises(ValidationError):
            StockAdjustmentRequest.model_validate(body)
