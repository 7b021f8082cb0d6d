"""Path → service mapping, access rules and header handling of the gateway (pure functions)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from gateway.headers import (
    client_ip,
    downstream_response_headers,
    end_to_end,
    rewrite_location,
    upstream_request_headers,
)
from gateway.ratelimit import identity_of
from gateway.routing import (
    Access,
    access_for,
    compile_template,
    has_dot_segment,
    non_normal_path,
    public_path,
    service_for,
)
from shopkit.auth import Principal


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/auth/login", "customers"),
        ("/auth/jwks", "customers"),
        ("/customers/me", "customers"),
        ("/products", "products"),
        ("/products/abc/stock", "products"),
        ("/orders", "orders"),
        ("/orders/7/cancel", "orders"),
        ("/alerts/1/read", "alerts"),
        ("/analytics/dashboard", "analytics"),
        ("/productsx", None),
        ("/health", None),
        ("/", None),
        ("", None),
        ("/schema/openapi.json", None),
    ],
)
def test_first_segment_picks_the_owning_service(path: str, service: str | None) -> None:
    assert service_for(path) == service


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("POST", "/auth/register", Access.PUBLIC),
        ("POST", "/auth/login", Access.PUBLIC),
        ("POST", "/auth/refresh", Access.PUBLIC),
        ("GET", "/auth/jwks", Access.PUBLIC),
        ("GET", "/products", Access.PUBLIC),
        ("GET", "/products/", Access.PUBLIC),
        ("HEAD", "/products/p1", Access.PUBLIC),
        ("GET", "/products/p1/stock", Access.SIGNED_IN),
        ("POST", "/products", Access.ADMIN),
        ("PATCH", "/products/p1", Access.ADMIN),
        ("POST", "/products/p1/stock", Access.ADMIN),
        ("POST", "/orders", Access.SIGNED_IN),
        ("GET", "/orders/o1", Access.SIGNED_IN),
        ("POST", "/orders/o1/cancel", Access.SIGNED_IN),
        ("POST", "/orders/o1/status", Access.ADMIN),
        ("GET", "/customers/me", Access.SIGNED_IN),
        ("GET", "/auth/register", Access.SIGNED_IN),
        ("GET", "/alerts", Access.SIGNED_IN),
        ("GET", "/analytics/dashboard", Access.ADMIN),
        ("get", "/products", Access.PUBLIC),
        ("GET", "/analytics/admin/dead-letters", Access.ADMIN),
        ("GET", "/orders/admin/dead-letters/orders.stock_reserved", Access.ADMIN),
        ("POST", "/products/admin/dead-letters/products.order_created/replay", Access.ADMIN),
        ("POST", "/alerts/admin/dead-letters/alerts.stock_low/discard", Access.ADMIN),
        # Methods no handler serves: an admin area stays admin, as do the other writes of an admin-only write.
        ("PUT", "/products/p1", Access.ADMIN),
        ("POST", "/orders/admin/dead-letters", Access.ADMIN),
        ("GET", "/orders/admin/dead-letters/orders.stock_reserved/replay", Access.ADMIN),
        ("GET", "/orders/o1/status", Access.SIGNED_IN),
    ],
)
def test_access_rules(method: str, path: str, access: Access) -> None:
    assert access_for(method, path) is access


def test_templates_match_one_segment_per_parameter() -> None:
    pattern = compile_template("/products/{id}/stock")
    assert pattern.match("/products/abc/stock")
    assert pattern.match("/products/abc/stock/")
    assert not pattern.match("/products/stock")
    assert not pattern.match("/products/a/b/stock")
    assert not pattern.match("/products/abc/stockx")


def test_dot_segments_are_detected() -> None:
    assert has_dot_segment("/products/../orders")
    assert has_dot_segment("/products/./x")
    assert not has_dot_segment("/products/a..b")


def test_public_path_prefers_the_raw_path() -> None:
    assert public_path({"raw_path": b"/api/products/a%20b", "path": "/products/a b/"}) == "/api/products/a b"
    assert public_path({"path": "/api/x"}) == "/api/x"


def test_hop_by_hop_and_connection_listed_headers_are_dropped() -> None:
    headers = [
        ("Connection", "keep-alive, X-Private-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("TE", "trailers"),
        ("Proxy-Authorization", "Basic x"),
        ("X-Private-Hop", "secret"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer abc"),
    ]
    assert end_to_end(headers) == [("Content-Type", "application/json"), ("Authorization", "Bearer abc")]


def test_upstream_headers_carry_identity_and_drop_spoofed_values() -> None:
    out = upstream_request_headers(
        [
            ("host", "shop.example"),
            ("authorization", "Bearer t"),
            ("x-user-id", "someone-else"),
            ("x-user-role", "admin"),
            ("x-request-id", "caller-value"),
            ("x-forwarded-for", "6.6.6.6"),
            ("content-length", "12"),
            ("accept", "application/json"),
        ],
        request_id="rid-1",
        peer="10.0.0.9",
        scheme="http",
        user_id="u1",
        user_role="customer",
        trust_forwarded_for=False,
    )
    assert out["Authorization"] == "Bearer t"
    assert out.getall("X-User-Id") == ["u1"]
    assert out.getall("X-User-Role") == ["customer"]
    assert out.getall("X-Request-ID") == ["rid-1"]
    assert out.getall("X-Forwarded-For") == ["10.0.0.9"]
    assert out["X-Forwarded-Host"] == "shop.example"
    assert out["X-Forwarded-Prefix"] == "/api"
    assert "host" not in out and "content-length" not in out
    assert out["Accept-Encoding"] == "identity"
    assert out["Accept"] == "application/json"


def test_anonymous_callers_get_no_identity_headers_even_if_they_send_some() -> None:
    out = upstream_request_headers(
        [("x-user-id", "admin-id"), ("x-user-role", "admin"), ("accept-encoding", "gzip")],
        request_id="r", peer="1.2.3.4", scheme="https", user_id=None, user_role=None, trust_forwarded_for=False,
    )
    assert "x-user-id" not in out and "x-user-role" not in out
    assert out["Accept-Encoding"] == "gzip"
    assert out["X-Forwarded-Proto"] == "https"


def test_trusted_forwarded_for_chain_is_extended() -> None:
    out = upstream_request_headers(
        [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")],
        request_id="r", peer="10.1.1.1", scheme="http", user_id=None, user_role=None, trust_forwarded_for=True,
    )
    assert out["X-Forwarded-For"] == "203.0.113.7, 10.1.1.1"
    assert out["X-Forwarded-Proto"] == "https"


@pytest.mark.parametrize(
    ("peer", "xff", "trust", "expected"),
    [
        ("10.0.0.1", "203.0.113.7", False, "10.0.0.1"),
        ("10.0.0.1", "203.0.113.7", True, "203.0.113.7"),
        ("10.0.0.1", "1.1.1.1, 203.0.113.7", True, "203.0.113.7"),  # the proxy's entry, not the client's claim
        ("10.0.0.1", "not-an-ip", True, "10.0.0.1"),
        ("10.0.0.1", None, True, "10.0.0.1"),
        (None, None, False, "unknown"),
        ("10.0.0.1", "2001:db8::1", True, "2001:db8::1"),
    ],
)
def test_client_ip(peer: str | None, xff: str | None, trust: bool, expected: str) -> None:
    assert client_ip(peer, xff, trust) == expected


def test_rate_limit_identity_is_the_user_when_signed_in_else_the_ip() -> None:
    scope = {"type": "http", "method": "GET", "path": "/api/customers/me", "client": ("10.0.0.1", 5000),
             "headers": [(b"x-forwarded-for", b"203.0.113.9")], "user": None}
    assert identity_of(scope, trust_forwarded_for=False) == "ip:10.0.0.1"  # type: ignore[arg-type]
    assert identity_of(scope, trust_forwarded_for=True) == "ip:203.0.113.9"  # type: ignore[arg-type]
    scope["user"] = Principal(id="u42", role="customer")
    assert identity_of(scope, trust_forwarded_for=True) == "user:u42"  # type: ignore[arg-type]
    # Logging in, registering and refreshing count per client, whatever token is attached.
    for path in ("/api/auth/login", "/api/auth/register", "/api/auth/refresh/"):
        anonymous = {**scope, "method": "POST", "path": path}
        assert identity_of(anonymous, trust_forwarded_for=True) == "ip:203.0.113.9"  # type: ignore[arg-type]
    assert identity_of({**scope, "type": "websocket", "path": "/api/ws"}, True) == "user:u42"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/orders/7", "/api/orders/7"),
        ("/api/orders/7", "/api/orders/7"),
        ("http://127.0.0.1:8003/orders/7", "/api/orders/7"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
        ("//elsewhere.example/x", "//elsewhere.example/x"),
        ("relative/path", "relative/path"),
    ],
)
def test_location_is_rewritten_to_the_public_path(location: str, expected: str) -> None:
    assert rewrite_location(location, "http://127.0.0.1:8003") == expected


def test_response_headers_keep_end_to_end_ones() -> None:
    out = downstream_response_headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", "10"),
            ("Location", "/orders/1"),
            ("Retry-After", "3"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Server", "uvicorn"),
            ("Date", "x"),
            ("X-Request-ID", "upstream"),
            ("Transfer-Encoding", "chunked"),
        ],
        "http://127.0.0.1:8003",
    )
    assert out == [
        ("Content-Type", "application/json"),
        ("Location", "/api/orders/1"),
        ("Retry-After", "3"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert CIMultiDict(out).getall("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize("raw", [
    b"/api/products", b"/api/products/", b"/api/products/p1/stock", b"/api/products/a..b", b"/api/auth/jwks",
    b"/health/ready", b"/api/products/caf%C3%A9",
])
def test_normal_paths_pass(raw: bytes) -> None:
    assert non_normal_path(raw) is None


@pytest.mark.parametrize("raw", [
    b"//api//products", b"/api//products", b"//api/products", b"/api/products//p1/stock", b"/api/./products",
    b"/api/products/../orders", b"/api/products/%2e%2e/orders", b"/api/products/%2E/x", b"/api/products%2Fp1",
    b"/api/products%2fp1%2fstock", b"/api/products%5Cp1", b"/api/products\\p1", b"/api/products/%252F",
    b"/api/products/%00", b"/api/products/%0d%0aX-Evil:1", b"api/products", b"/api/products/p1/stock//",
])
def test_non_normal_paths_are_named(raw: bytes) -> None:
    assert non_normal_path(raw)
