"""The combined OpenAPI document says what error answers really are: problem+json (found by the fuzz run)."""

from __future__ import annotations

from gateway.openapi import merge_openapi


def test_error_responses_are_documented_as_problem_json() -> None:
    litestar_default = {"application/json": {"schema": {"required": ["detail", "status_code"], "type": "object"}}}
    doc = {"paths": {"/orders": {"post": {"responses": {
        "201": {"description": "Created", "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {"description": "Bad request", "content": litestar_default},
    }}}}}
    merged = merge_openapi({"orders": doc})
    responses = merged["paths"]["/api/orders"]["post"]["responses"]
    assert responses["201"]["content"] == {"application/json": {"schema": {"type": "object"}}}
    assert responses["400"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    problem = merged["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]
