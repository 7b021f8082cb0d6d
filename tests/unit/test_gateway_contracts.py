"""Body contracts: the registry, the errors it raises; the docs merge."""

from __future__ import annotations

import pytest
from litestar.exceptions import ValidationException
from pydantic import BaseModel, Field

from gateway.contracts import ContractRegistry, check_body, load_registry
from gateway.openapi import merge_openapi
from shopkit.contracts.customers import RegisterRequest
from shopkit.errors import ProblemError


class Line(BaseModel):
    product_id: str
    quantity: int = Field(ge=1)


class CreateOrder(BaseModel):
    items: list[Line] = Field(min_length=1)


def test_builtin_customers_contracts_are_loaded() -> None:
    registry = load_registry()
    found = registry.find("POST", "/auth/register")
    assert found is not None and found.model is RegisterRequest
    assert registry.find("GET", "/auth/register") is None
    assert registry.find("POST", "/auth/unknown") is None


def test_a_registry_matches_path_templates() -> None:
    registry = ContractRegistry([("POST", "/orders", CreateOrder), ("patch", "/orders/{id}", Line)])
    assert len(registry) == 2
    assert registry.find("POST", "/orders").model is CreateOrder  # type: ignore[union-attr]
    assert registry.find("PATCH", "/orders/abc").model is Line  # type: ignore[union-attr]
    assert registry.find("PATCH", "/orders/abc/x") is None


def test_exact_templates_win_over_parameterised_ones() -> None:
    registry = ContractRegistry([("POST", "/orders/{id}", Line), ("POST", "/orders/bulk", CreateOrder)])
    assert registry.find("POST", "/orders/bulk").model is CreateOrder  # type: ignore[union-attr]
    assert registry.find("POST", "/orders/other").model is Line  # type: ignore[union-attr]


def test_invalid_body_names_the_field_and_the_rule() -> None:
    with pytest.raises(ValidationException) as info:
        check_body(CreateOrder, b'{"items": [{"product_id": "p", "quantity": 0}]}')
    assert info.value.extra == [
        {"key": "items.0.quantity", "message": "Input should be greater than or equal to 1", "source": "body"}
    ]


def test_top_level_type_error_has_no_field() -> None:
    with pytest.raises(ValidationException) as info:
        check_body(CreateOrder, b"[]")
    assert info.value.extra[0]["key"] is None  # type: ignore[index]


@pytest.mark.parametrize("body", [b"{nope", b"", b"   ", b"\xff\xfe"])
def test_malformed_or_missing_json_is_a_400(body: bytes) -> None:
    with pytest.raises(ProblemError) as info:
        check_body(CreateOrder, body)
    assert info.value.status_code == 400
    assert info.value.type_ == "malformed-request"


def test_valid_body_passes() -> None:
    check_body(CreateOrder, b'{"items": [{"product_id": "p", "quantity": 2}]}')


def _doc(paths: dict[str, object], schemas: dict[str, object]) -> dict[str, object]:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}, "tags": [{"name": "t"}]}


def test_docs_merge_prefixes_paths_and_renames_colliding_components() -> None:
    ref = {"$ref": "#/components/schemas/Item"}
    products = _doc(
        {"/products": {"get": {"responses": {"200": {"content": {"application/json": {"schema": ref}}}}}},
         "/health/ready": {"get": {}}, "/schema/openapi.json": {"get": {}}},
        {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}, "Problem": {"type": "object"}},
    )
    orders = _doc(
        {"/orders": {"post": {"requestBody": {"content": {"application/json": {"schema": ref}}}}},
         "/products": {"get": {}}},  # not routed to orders: dropped
        {"Item": {"type": "object", "properties": {"quantity": {"type": "integer"}}}, "Problem": {"type": "object"}},
    )
    own = {"paths": {"/api/health": {"get": {}}, "/health/live": {"get": {}}}}
    merged = merge_openapi({"products": products, "orders": orders}, own=own, missing=["alerts-service"])

    assert set(merged["paths"]) == {"/api/products", "/api/orders", "/api/health"}
    schemas = merged["components"]["schemas"]
    assert set(schemas) == {"Item", "OrdersItem", "Problem"}
    assert schemas["Item"]["properties"] == {"sku": {"type": "string"}}
    assert schemas["OrdersItem"]["properties"] == {"quantity": {"type": "integer"}}
    order_ref = merged["paths"]["/api/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert order_ref == {"$ref": "#/components/schemas/OrdersItem"}
    product_ref = merged["paths"]["/api/products"]["get"]["responses"]["200"]["content"]["application/json"]
    assert product_ref["schema"] == {"$ref": "#/components/schemas/Item"}
    assert "alerts-service" in merged["info"]["description"]
    assert merged["tags"] == [{"name": "t"}]
    # The inputs are not modified.
    assert orders["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"] is ref  # type: ignore[index]
