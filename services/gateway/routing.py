"""Which service owns a public path, and who may call it.

Paths here are the public path without the ``/api`` prefix (``/orders/42``): that is also
the path the owning service serves (``POST /api/orders`` reaches orders as ``POST /orders``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from shopkit import registry

API_PREFIX = "/api"

# First path segment → owning service (the registry's prefixes). The gateway's own paths (health, docs,
# ws) are routes of the gateway app itself and never reach this table.
PREFIX_TO_SERVICE: dict[str, str] = registry.prefix_to_service()
SERVICE_NAMES: tuple[str, ...] = registry.names(registry.upstreams())


def public_path(scope: Mapping[str, Any]) -> str:
    """The request path as the caller sent it (decoded), whatever a router mount did to ``scope["path"]``."""
    raw = scope.get("raw_path")
    return unquote(raw.decode("latin-1")) if raw else str(scope["path"])


def service_for(path: str) -> str | None:
    """The service owning ``path`` (``/products/1`` → ``products``), or None for an unknown prefix."""
    first = path.lstrip("/").split("/", 1)[0]
    return PREFIX_TO_SERVICE.get(first)


def has_dot_segment(path: str) -> bool:
    """``/products/../orders``: refused, so no client can steer a path past the access rules."""
    return any(segment in (".", "..") for segment in path.split("/"))


_ENCODED_SEPARATOR = re.compile(r"%(2f|5c|25)", re.IGNORECASE)


def non_normal_path(raw_path: bytes) -> str | None:
    """Why the raw request path is not in normal form, or None when it is.

    The edge's access rules and body contracts match normal paths; a path that a service (or anything
    in between) could read differently from the gateway is refused instead of guessed at: empty
    segments (``//api//products``), ``.``/``..`` segments (also percent-encoded), an encoded ``/``,
    ``\\`` or ``%`` (``%2F``, ``%5C``, double encoding), backslashes and control characters.
    A single trailing slash is normal (``/api/products/``).
    """
    raw = raw_path.decode("latin-1")
    if _ENCODED_SEPARATOR.search(raw):
        return "an encoded '/', '\\' or '%' in the path"
    path = unquote(raw)
    if not path.startswith("/"):
        return "a path that does not start with '/'"
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "a backslash or control character in the path"
    segments = path.split("/")[1:]
    if any(segment == "" for segment in segments[:-1]):
        return "an empty path segment ('//')"
    if any(segment in (".", "..") for segment in segments):
        return "a '.' or '..' path segment"
    return None


class Access(StrEnum):
    PUBLIC = "public"  # no token needed (a valid token is still verified and forwarded)
    SIGNED_IN = "signed-in"  # any customer or admin
    ADMIN = "admin"


def compile_template(template: str) -> re.Pattern[str]:
    """``/products/{id}/stock`` → a pattern matching one path segment per ``{...}``; a trailing slash is optional."""
    parts = re.split(r"(\{[^/{}]+\})", template.rstrip("/") or "/")
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}/?$")


@dataclass(frozen=True)
class AccessRule:
    methods: frozenset[str]
    template: str
    access: Access
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, methods: Iterable[str], template: str, access: Access) -> AccessRule:
        return cls(frozenset(m.upper() for m in methods), template, access, compile_template(template))

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.pattern.match(path) is not None


READ = ("GET", "HEAD")

# Endpoints that act for no signed-in user: whatever token is attached, their caller is the client
# (its address), so attaching tokens never buys fresh rate-limit buckets of logins or registrations.
ANONYMOUS_RULES: tuple[AccessRule, ...] = (
    AccessRule.of(["POST"], "/auth/register", Access.PUBLIC),
    AccessRule.of(["POST"], "/auth/login", Access.PUBLIC),
    AccessRule.of(["POST"], "/auth/refresh", Access.PUBLIC),
)

# First match wins; anything not listed needs a signed-in caller. The services check roles
# again: the ADMIN rules only spare them traffic that would be refused anyway.
ACCESS_RULES: tuple[AccessRule, ...] = (
    *ANONYMOUS_RULES,
    AccessRule.of(READ, "/auth/jwks", Access.PUBLIC),
    AccessRule.of(READ, "/products", Access.PUBLIC),
    AccessRule.of(READ, "/products/{id}", Access.PUBLIC),
    AccessRule.of(["POST"], "/products", Access.ADMIN),
    AccessRule.of(["PATCH", "PUT", "DELETE"], "/products/{id}", Access.ADMIN),
    AccessRule.of(["POST"], "/products/{id}/stock", Access.ADMIN),
    AccessRule.of(["POST"], "/orders/{id}/status", Access.ADMIN),
    AccessRule.of(READ, "/analytics/dashboard", Access.ADMIN),
    # Each consuming service's dead letters (shopkit.dlq).
    *(AccessRule.of([*READ, "POST"], template, Access.ADMIN)
      for service in ("products", "orders", "alerts", "analytics")
      for template in (f"/{service}/admin/dead-letters", f"/{service}/admin/dead-letters/{{queue}}",
                       f"/{service}/admin/dead-letters/{{queue}}/replay",
                       f"/{service}/admin/dead-letters/{{queue}}/discard")),
)


def access_for(method: str, path: str, rules: Iterable[AccessRule] = ACCESS_RULES) -> Access:
    method = method.upper()
    for rule in rules:
        if rule.matches(method, path):
            return rule.access
    return Access.SIGNED_IN


def is_anonymous(method: str, path: str) -> bool:
    """``POST /auth/login`` and its kind (:data:`ANONYMOUS_RULES`): limited per client, never per token."""
    method = method.upper()
    return any(rule.matches(method, path) for rule in ANONYMOUS_RULES)
