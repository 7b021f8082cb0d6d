"""Unit tests of the products domain: reservation helpers, list filters and the request contracts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from products.catalog import ListQuery, crossed_low_threshold
from products.reservations import OrderCreatedData, OrderLineData, OrderUpdatedData, merge_lines
from shopkit.contracts.products import CreateProductRequest, StockAdjustmentRequest, UpdateProductRequest


def test_merge_lines_adds_quantities_and_orders_by_product() -> None:
    lines = [OrderLineData(product_id="b", quantity=1), OrderLineData(product_id="a", quantity=2),
             OrderLineData(product_id="b", quantity=3)]
    assert merge_lines(lines) == [("a", 2), ("b", 4)]


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
    data = OrderCreatedData.model_validate({"order_id": "o", "items": [{"product_id": "p", "quantity": 1}]})
    assert data.items[0].quantity == 1
    for bad in ({"order_id": "o", "items": []}, {"order_id": "o", "items": [{"product_id": "p", "quantity": 0}]},
                {"items": [{"product_id": "p", "quantity": 1}]}):
        with pytest.raises(ValidationError):
            OrderCreatedData.model_validate(bad)
    assert OrderUpdatedData.model_validate({"order_id": "o", "new_status": "cancelled"}).new_status == "cancelled"


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
