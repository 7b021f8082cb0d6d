"""The session shop's own gateway in front of the real services."""

from __future__ import annotations

import httpx
import pytest

from devtools.shop import LocalShop
from tests.support.services import UPSTREAMS

SERVICE_KEYS = {f"{name}-service" for name in UPSTREAMS}


async def test_customer_flow_through_the_gateway(api: httpx.AsyncClient, customer: dict[str, str]) -> None:
    r = await api.get("/customers/me", headers={"Authorization": f"Bearer {customer['access_token']}",
                                                "X-Request-ID": "shop-gw-me-1"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == customer["id"]
    assert r.headers["x-request-id"] == "shop-gw-me-1"
    assert "ratelimit-limit" in r.headers


async def test_health_lists_every_service(api: httpx.AsyncClient) -> None:
    r = await api.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "services", "degraded"}
    assert set(body["services"]) == SERVICE_KEYS
    assert set(body["services"].values()) <= {"running", "down"}
    assert body["services"]["customers-service"] == "running"
    assert set(body["degraded"]) <= SERVICE_KEYS  # running services missing a dependency they work without
    healthy = all(v == "running" for v in body["services"].values()) and not body["degraded"]
    expected = "ok" if healthy else "degraded"
    assert body["status"] == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "bad", "password": "x", "name": ""},
        {"email": "a@example.com", "password": "1234567890", "name": "A"},
        {"email": "a@example.com", "password": "correct horse battery", "name": "A", "extra": 1},
    ],
)
async def test_gateway_and_service_refuse_a_body_with_the_same_problem(
    api: httpx.AsyncClient, shop: LocalShop, payload: dict[str, object]
) -> None:
    via_gateway = await api.post("/auth/register", json=payload)
    async with httpx.AsyncClient(base_url=shop.url("customers"), timeout=10) as direct_client:
        direct = await direct_client.post("/auth/register", json=payload)
    assert via_gateway.status_code == direct.status_code == 422
    assert via_gateway.headers["content-type"] == direct.headers["content-type"] == "application/problem+json"
    strip = {"instance", "request_id"}
    gateway_body = {k: v for k, v in via_gateway.json().items() if k not in strip}
    direct_body = {k: v for k, v in direct.json().items() if k not in strip}
    assert gateway_body == direct_body
    assert via_gateway.json()["instance"] == "/api/auth/register"


async def test_combined_docs_cover_the_real_services(api: httpx.AsyncClient) -> None:
    r = await api.get("/docs/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert "/api/auth/register" in doc["paths"] and "/api/customers/me" in doc["paths"]
    assert "/api/health" in doc["paths"]
    assert not any(p.startswith("/api/health/") or p.startswith("/api/schema") for p in doc["paths"])
    assert "RegisterRequest" in doc["components"]["schemas"]


async def test_a_service_problem_names_the_path_the_caller_used(
        api: httpx.AsyncClient, customer: dict[str, str]) -> None:
    """A problem the service itself answers (routing's 405, a 404) names /api/..., the path the caller used."""
    auth = {"Authorization": f"Bearer {customer['access_token']}"}
    wrong_method = await api.get("/orders/0123456789abcdef01234567/status", headers=auth)
    assert wrong_method.status_code == 405, wrong_method.text
    assert wrong_method.headers["content-type"] == "application/problem+json"
    assert wrong_method.json()["instance"] == "/api/orders/0123456789abcdef01234567/status"
    missing = await api.get("/orders/0123456789abcdef01234567", headers=auth)
    assert missing.status_code == 404, missing.text
    assert missing.json()["instance"] == "/api/orders/0123456789abcdef01234567"
