"""Which headers cross the proxy hop, and which the gateway sets itself.

RFC 9110 §7.6.1: hop-by-hop headers (and any header a ``Connection`` header names) belong to
one connection and are never forwarded. Identity headers (``X-User-*``) and forwarding headers
are always set by the gateway, never passed through from the caller, so nobody can claim to
be someone else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from multidict import CIMultiDict

from gateway.routing import API_PREFIX

Header = tuple[str, str]

HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the gateway for every upstream request: a caller's value is dropped.
GATEWAY_SET_REQUEST: frozenset[str] = frozenset(
    {
        "host",
        "content-length",
        "x-user-id",
        "x-user-role",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    }
)
# Set by the gateway's own server on the way out (length is recomputed, the request id is the gateway's).
GATEWAY_SET_RESPONSE: frozenset[str] = frozenset({"content-length", "date", "server", "x-request-id"})


def connection_tokens(headers: Iterable[Header]) -> set[str]:
    """Header names listed in ``Connection`` (also hop-by-hop)."""
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def end_to_end(headers: Iterable[Header], also_drop: frozenset[str] = frozenset()) -> list[Header]:
    """``headers`` without hop-by-hop ones and without ``also_drop`` (names compared case-insensitively)."""
    items = list(headers)
    drop = HOP_BY_HOP | also_drop | connection_tokens(items)
    return [(name, value) for name, value in items if name.lower() not in drop]


def client_ip(peer: str | None, forwarded_for: str | None, trust_forwarded_for: bool) -> str:
    """The caller's address: the peer's, or (behind a trusted proxy) the last X-Forwarded-For entry.

    The last entry is the one the proxy in front of us appended; entries to its left were sent by
    the client and can be anything.
    """
    if trust_forwarded_for and forwarded_for:
        candidate = forwarded_for.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            pass
    return peer or "unknown"


def upstream_request_headers(
    headers: Iterable[Header],
    *,
    request_id: str,
    peer: str | None,
    scheme: str,
    user_id: str | None,
    user_role: str | None,
    trust_forwarded_for: bool,
) -> CIMultiDict[str]:
    """The headers for the upstream request (original end-to-end headers + the gateway's own)."""
    items = list(headers)
    original = CIMultiDict(items)
    out: CIMultiDict[str] = CIMultiDict(end_to_end(items, GATEWAY_SET_REQUEST))
    forwarded_for = ", ".join(original.getall("x-forwarded-for", [])) or None
    if trust_forwarded_for and forwarded_for and peer:
        out["X-Forwarded-For"] = f"{forwarded_for}, {peer}"
        out["X-Forwarded-Proto"] = original.get("x-forwarded-proto", scheme)
    else:
        out["X-Forwarded-For"] = peer or "unknown"
        out["X-Forwarded-Proto"] = scheme
    if host := original.get("host"):
        out["X-Forwarded-Host"] = host
    out["X-Forwarded-Prefix"] = API_PREFIX
    out["X-Request-ID"] = request_id
    if user_id is not None and user_role is not None:
        out["X-User-Id"] = user_id
        out["X-User-Role"] = user_role
    # With auto-decompression off the body passes through as the upstream encoded it; a caller
    # that did not say what it accepts gets it unencoded.
    if "accept-encoding" not in original:
        out["Accept-Encoding"] = "identity"
    return out


def rewrite_location(location: str, upstream_base: str) -> str:
    """A service says ``Location: /orders/7`` (its own path); callers must see ``/api/orders/7``."""
    if location.startswith(upstream_base + "/"):
        location = location[len(upstream_base):]
    if location.startswith("/") and not location.startswith("//") and not (
        location == API_PREFIX or location.startswith(API_PREFIX + "/")
    ):
        return API_PREFIX + location
    return location


def downstream_response_headers(headers: Iterable[Header], upstream_base: str) -> list[Header]:
    out: list[Header] = []
    for name, value in end_to_end(headers, GATEWAY_SET_RESPONSE):
        if name.lower() in ("location", "content-location"):
            value = rewrite_location(value, upstream_base)
        out.append((name, value))
    return out


def as_raw(headers: Iterable[Header]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def decode_raw(headers: Iterable[tuple[bytes, bytes]]) -> list[Header]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
