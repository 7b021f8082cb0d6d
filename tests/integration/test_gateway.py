"""The gateway as a process, in front of fake services (FakeService) whose every received request we see.

Two extra gateways run for this module (the session's shop is left alone):
- ``edge``: every service is a healthy fake; proves forwarding, validation, auth and pass-through.
- ``faulty``: orders is down, alerts hangs, analytics is disabled, Redis is unreachable and the
  timeouts are tiny; proves 503 / 504, degraded health, disabled services and failing open.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devtools.procs import free_port
from devtools.shop import LocalShop
from tests.support.docs import assert_self_contained_docs
from tests.support.gateway import (
    BIG_BODY,
    FakeService,
    GatewayProc,
    service_urls,
    start_gateways,
    stop_gateways,
    wait_for,
)
from tests.support.services import UPSTREAMS
from tests.support.tokens import TokenMint

SERVICES = UPSTREAMS
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[dict[str, FakeService]]:
    services = {name: FakeService(name) for name in (*SERVICES, "slow", "flaky")}
    for service in services.values():
        await service.start()
    try:
        yield services
    finally:
        for service in services.values():
            await service.stop()


@pytest.fixture(scope="module")
def gateways(shop: LocalShop, fakes: dict[str, FakeService]) -> Iterator[dict[str, GatewayProc]]:
    edge = {**service_urls(**{name: fakes[name].url for name in SERVICES}), "MICROSHOP_MAX_BODY_BYTES": "4096"}
    faulty = {
        **service_urls(customers=fakes["flaky"].url, products=fakes["products"].url,
                       orders=f"http://127.0.0.1:{free_port()}", alerts=fakes["slow"].url),
        "MICROSHOP_ANALYTICS_ENABLED": "false",
        "MICROSHOP_UPSTREAM_TIMEOUT_SECONDS": "0.5",
        "MICROSHOP_HEALTH_TIMEOUT_SECONDS": "0.5",
        "MICROSHOP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    started = start_gateways(shop, {"gw-edge": edge, "gw-faulty": faulty})
    try:
        yield started
    finally:
        stop_gateways(started)


@pytest.fixture
async def edge(gateways: dict[str, GatewayProc]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateways["gw-edge"].api, timeout=10) as client:
        yield client


@pytest.fixture
async def faulty(gateways: dict[str, GatewayProc]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateways["gw-faulty"].api, timeout=10) as client:
        yield client


def rid() -> str:
    return f"gw-test-{uuid.uuid4().hex[:12]}"


def assert_problem(response: httpx.Response, status: int, type_suffix: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    if type_suffix is not None:
        assert body["type"] == f"https://microshop.dev/problems/{type_suffix}"
    return dict(body)


# --- routing and forwarding ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("public", "service", "upstream_path"),
    [
        ("/auth/jwks", "customers", "/auth/jwks"),
        ("/customers/me", "customers", "/customers/me"),
        ("/products/p-1", "products", "/products/p-1"),
        ("/orders", "orders", "/orders"),
        ("/alerts/a1", "alerts", "/alerts/a1"),
        ("/analytics/dashboard", "analytics", "/analytics/dashboard"),
    ],
)
async def test_first_segment_routes_to_the_owning_service(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint,
    public: str, service: str, upstream_path: str,
) -> None:
    request_id = rid()
    token = mint.token(role="admin")
    r = await edge.get(public, headers={"X-Request-ID": request_id, "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["x-upstream"] == service
    [seen] = fakes[service].seen(request_id)
    assert seen["path"] == upstream_path
    assert r.headers["x-request-id"] == request_id


async def test_method_query_body_and_identity_are_forwarded(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    request_id = rid()
    token = mint.token(sub="user-123", role="customer")
    body = b'{"note": "kept byte for byte",   "n": 1}'
    r = await edge.request(
        "PUT", "/orders/o%3A1/notes?b=2&a=1&a=%20x",  # percent-encoding kept as sent (an encoded / is refused)
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Request-ID": request_id,
            "X-User-Id": "someone-else",  # spoofed: replaced by the verified identity
            "X-User-Role": "admin",
            "X-Forwarded-For": "6.6.6.6",  # not trusted by default
            "Connection": "keep-alive, X-Hop-Secret",
            "X-Hop-Secret": "not forwarded",
            "X-Custom-Client": "forwarded",
        },
    )
    assert r.status_code == 200, r.text
    [seen] = fakes["orders"].seen(request_id)
    headers = seen["headers"]
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/orders/o%3A1/notes?b=2&a=1&a=%20x"
    assert seen["body"].encode("latin-1") == body
    assert headers["authorization"] == [f"Bearer {token}"]
    assert headers["x-user-id"] == ["user-123"]
    assert headers["x-user-role"] == ["customer"]
    assert headers["x-request-id"] == [request_id]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-prefix"] == ["/api"]
    assert headers["content-type"] == ["application/json"]
    assert headers["x-custom-client"] == ["forwarded"]
    assert "x-hop-secret" not in headers


async def test_public_routes_need_no_token_and_carry_no_identity(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    request_id = rid()
    r = await edge.get("/products", params={"q": "mug"}, headers={"X-Request-ID": request_id, "X-User-Id": "x"})
    assert r.status_code == 200, r.text
    [seen] = fakes["products"].seen(request_id)
    assert seen["query"] == "q=mug"
    assert "x-user-id" not in seen["headers"] and "authorization" not in seen["headers"]


async def test_upstream_response_passes_through(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    r = await edge.post("/orders/created", headers={"Authorization": f"Bearer {mint.token()}"})
    assert r.status_code == 201
    assert r.json() == {"id": "o1"}
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.headers["location"] == "/api/orders/o1"
    assert r.headers["retry-after"] == "7"
    assert r.headers["x-custom"] == "kept"
    assert r.headers["set-cookie"] == "s=1"
    empty = await edge.delete("/orders/empty", headers={"Authorization": f"Bearer {mint.token()}"})
    assert empty.status_code == 204 and empty.content == b""


async def test_large_responses_are_streamed_intact(edge: httpx.AsyncClient) -> None:
    r = await edge.get("/products/big")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.content == BIG_BODY


async def test_request_id_is_generated_and_forwarded_when_missing(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    marker = uuid.uuid4().hex
    r = await edge.get("/products", params={"marker": marker})
    generated = r.headers["x-request-id"]
    assert len(generated) >= 16
    [seen] = [s for s in fakes["products"].requests if s["query"] == f"marker={marker}"]
    assert seen["headers"]["x-request-id"] == [generated]


async def test_unknown_prefix_is_a_404_problem(edge: httpx.AsyncClient) -> None:
    request_id = rid()
    for path in ("/nothing-here", "/", "/healthz/x"):
        r = await edge.get(path, headers={"X-Request-ID": request_id})
        body = assert_problem(r, 404, "not-found")
        assert r.headers["x-request-id"] == request_id
        assert body["request_id"] == request_id


async def test_dot_segments_are_refused(edge: httpx.AsyncClient, gateways: dict[str, GatewayProc]) -> None:
    # httpx would normalise "..", so send the raw request line ourselves.
    async with httpx.AsyncClient(timeout=5) as client:
        request = client.build_request("GET", f"{gateways['gw-edge'].url}/api/products/x")
        request.url = request.url.copy_with(raw_path=b"/api/products/%2e%2e/orders")
        r = await client.send(request)
    assert_problem(r, 400, "malformed-request")


NON_NORMAL = (b"//api//products", b"/api//products", b"/api/%2e/products", b"/api/products/", b"/api/products%2F",
              b"/api//orders/o1/status", b"/api/orders//o1/status", b"/api/orders/o1%2Fstatus",
              b"/api//auth/register", b"/api/auth//register", b"/api/auth/%2E/register", b"/api/x/%2e%2e/auth/register")


async def test_non_normal_paths_cannot_skip_admin_rules_or_body_checks(
    gateways: dict[str, GatewayProc], fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    """A customer's POST with an invalid body to admin or validated routes under path tricks: refused at the edge."""
    request_id = rid()
    headers = {"Authorization": f"Bearer {mint.token(role='customer')}", "X-Request-ID": request_id}
    bad_body = {"email": "not-an-email", "password": "x", "role": "admin", "price": -1, "status": "shipped"}
    async with httpx.AsyncClient(timeout=5) as client:
        for raw in NON_NORMAL:
            request = client.build_request("POST", f"{gateways['gw-edge'].url}/api/x", json=bad_body, headers=headers)
            request.url = request.url.copy_with(raw_path=raw)  # httpx would normalise these
            r = await client.send(request)
            if raw == b"/api/products/":  # a trailing slash is normal: the admin rule applies
                assert_problem(r, 403, "forbidden")
                continue
            body = assert_problem(r, 400, "malformed-request")
            assert r.headers["x-request-id"] == request_id, raw
            assert "normal form" in str(body["detail"]), raw
    assert all(fake.seen(request_id) == [] for fake in fakes.values())


# --- authentication at the edge ----------------------------------------------------------------------

async def test_protected_routes_need_a_token(edge: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    request_id = rid()
    r = await edge.get("/orders", headers={"X-Request-ID": request_id})
    assert_problem(r, 401, "authentication-required")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert fakes["orders"].seen(request_id) == []


async def test_admin_routes_refuse_customers_at_the_edge(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    request_id = rid()
    customer = {"Authorization": f"Bearer {mint.token(role='customer')}", "X-Request-ID": request_id}
    r = await edge.get("/analytics/dashboard", headers=customer)
    assert_problem(r, 403, "forbidden")
    r = await edge.post("/orders/o1/status", json={"status": "shipped"}, headers=customer)
    assert_problem(r, 403, "forbidden")
    assert fakes["analytics"].seen(request_id) == [] and fakes["orders"].seen(request_id) == []


def attack_tokens(mint: TokenMint) -> dict[str, str]:
    now = int(time.time())
    other_key = Ed25519PrivateKey.generate()
    return {
        "expired": mint.token(iat=now - 3600, exp=now - 1800),
        "wrong key, same kid": mint.token(key=other_key),
        "unknown kid": mint.token(key=other_key, kid="not-a-known-kid"),
        "alg none": mint.unsigned(),
        "HS256 keyed with the public key": mint.hs256_with_public_key(),
        "wrong audience": mint.token(aud="someone-else"),
        "wrong issuer": mint.token(iss="evil"),
        "refresh token type": mint.token(typ="refresh"),
        "unknown role": mint.token(role="root"),
        "no expiry": mint.token(exp=None),
        "garbage": "not.a.jwt",
    }


async def test_token_attacks_are_refused_before_proxying(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    good = await edge.get("/orders", headers={"Authorization": f"Bearer {mint.token()}"})
    assert good.status_code == 200, good.text  # the mint itself is right: only the attacks differ
    for name, token in attack_tokens(mint).items():
        request_id = rid()
        # A public route too: a bad token is refused whatever the route.
        for path in ("/orders", "/products"):
            r = await edge.get(path, headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id})
            assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
            assert r.headers["content-type"] == PROBLEM, name
            assert "invalid_token" in r.headers["www-authenticate"], name
        assert fakes["orders"].seen(request_id) == [], name
        assert fakes["products"].seen(request_id) == [], name


# --- body validation -------------------------------------------------------------------------------

async def test_invalid_bodies_are_refused_with_the_field_named(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService]
) -> None:
    request_id = rid()
    r = await edge.post(
        "/auth/register",
        json={"email": "not-an-email", "password": "correct horse battery", "name": "X", "role": "admin"},
        headers={"X-Request-ID": request_id},
    )
    body = assert_problem(r, 422, "validation-error")
    fields = {e["field"]: e["rule"] for e in body["errors"]}  # type: ignore[attr-defined]
    assert set(fields) == {"email", "role"}
    assert "email" in fields["email"] and "Extra inputs" in fields["role"]
    assert all(e["source"] == "body" for e in body["errors"])  # type: ignore[attr-defined]
    assert fakes["customers"].seen(request_id) == []


async def test_nested_fields_are_named_by_path(
    edge: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint
) -> None:
    request_id = rid()
    r = await edge.post(
        "/orders", json={"items": [{"product_id": "p1", "quantity": 0}]},
        headers={"Authorization": f"Bearer {mint.token()}", "X-Request-ID": request_id},
    )
    body = assert_problem(r, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["items.0.quantity"]  # type: ignore[attr-defined]
    assert fakes["orders"].seen(request_id) == []


async def test_valid_bodies_are_forwarded_unchanged(edge: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    request_id = rid()
    payload = {"email": "ok@example.com", "password": "correct horse battery", "name": "  Spaced  "}
    r = await edge.post("/auth/register", json=payload, headers={"X-Request-ID": request_id})
    assert r.status_code == 200, r.text
    [seen] = fakes["customers"].seen(request_id)
    assert json.loads(seen["body"]) == payload


async def test_malformed_json_is_a_400(edge: httpx.AsyncClient) -> None:
    r = await edge.post("/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "malformed-request")


async def test_oversized_bodies_are_refused(edge: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    request_id = rid()
    r = await edge.post("/auth/login", content=b"x" * 5000, headers={"X-Request-ID": request_id})
    assert_problem(r, 413, "body-too-large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(5):
            yield b"y" * 1000

    r = await edge.post("/auth/login", content=chunks(), headers={"X-Request-ID": request_id})
    assert_problem(r, 413, "body-too-large")
    assert fakes["customers"].seen(request_id) == []


# --- health and docs -------------------------------------------------------------------------------

async def test_health_is_ok_when_every_service_runs(edge: httpx.AsyncClient) -> None:
    r = await edge.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "services": {f"{name}-service": "running" for name in SERVICES},
                        "degraded": {}}


async def test_health_reports_down_services_within_the_timeout(faulty: httpx.AsyncClient) -> None:
    started = time.monotonic()
    r = await faulty.get("/health")
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    # orders: nothing listens; alerts: /health/ready hangs past the 0.5 s timeout; analytics: disabled.
    assert r.json() == {
        "status": "degraded",
        "services": {
            "customers-service": "running",
            "products-service": "running",
            "orders-service": "down",
            "alerts-service": "down",
        },
        "degraded": {},
    }
    assert elapsed < 0.5 + 1.0, elapsed


async def test_combined_docs(edge: httpx.AsyncClient) -> None:
    r = await edge.get("/docs/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {f"/api/{name}" for name in SERVICES} <= set(paths)
    assert "/api/health" in paths
    page = await edge.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def test_docs_page_loads_nothing_from_elsewhere_with_integrity_and_a_strict_csp(
        gateways: dict[str, GatewayProc]) -> None:
    async with httpx.AsyncClient(base_url=gateways["gw-edge"].url, timeout=10) as origin:
        await assert_self_contained_docs(origin, "/api/docs", "/api/docs/openapi.json")


# --- failures --------------------------------------------------------------------------------------

async def test_unreachable_service_is_a_503(faulty: httpx.AsyncClient, mint: TokenMint) -> None:
    r = await faulty.get("/orders", headers={"Authorization": f"Bearer {mint.token()}"})
    assert_problem(r, 503, "upstream-unavailable")
    assert r.headers["retry-after"] == "1"


async def test_service_that_goes_away_and_comes_back(faulty: httpx.AsyncClient, fakes: dict[str, FakeService]) -> None:
    flaky = fakes["flaky"]
    assert (await faulty.get("/auth/jwks")).status_code == 200  # leaves a pooled keep-alive connection
    await flaky.stop()
    try:
        r = await faulty.get("/auth/jwks")
        assert_problem(r, 503, "upstream-unavailable")
        health = (await faulty.get("/health")).json()
        assert health["services"]["customers-service"] == "down"
    finally:
        await flaky.start()
    r = await faulty.get("/auth/jwks")
    assert r.status_code == 200, r.text


async def test_slow_service_is_a_504(faulty: httpx.AsyncClient, fakes: dict[str, FakeService], mint: TokenMint) -> None:
    started = time.monotonic()
    r = await faulty.get("/alerts/slow", headers={"Authorization": f"Bearer {mint.token()}"})
    elapsed = time.monotonic() - started
    assert_problem(r, 504, "upstream-timeout")
    assert 0.4 < elapsed < 2.5, elapsed
    fakes["slow"].release.set()


async def test_disabled_service_is_a_404_problem(faulty: httpx.AsyncClient, mint: TokenMint) -> None:
    r = await faulty.get("/analytics/dashboard", headers={"Authorization": f"Bearer {mint.token(role='admin')}"})
    body = assert_problem(r, 404, "service-disabled")
    assert "analytics" in str(body["detail"])


async def test_rate_limiter_fails_open_without_redis(
    faulty: httpx.AsyncClient, gateways: dict[str, GatewayProc]
) -> None:
    for _ in range(3):
        r = await faulty.get("/products")
        assert r.status_code == 200
        assert "ratelimit-limit" not in r.headers
    proc = gateways["gw-faulty"].proc
    assert await wait_for(lambda: any("fail open" in line for line in proc.lines), 5), proc.lines[-20:]
    # ...and the gateway stays ready: Redis is not one of its readiness dependencies.
    ready = await faulty.get(f"{gateways['gw-faulty'].url}/health/ready")
    assert ready.status_code == 200, ready.text
