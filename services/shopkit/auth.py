"""JWT verification against the customers service's JWKS, and role guards.

Only EdDSA is accepted: ``alg: none`` and HS256-signed-with-the-public-key tokens fail
before any key is used. Keys are cached, refreshed in the background when old, and refetched when a
token names an unknown ``kid`` (see :class:`JwksCache`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import jwt
from jwt import PyJWK
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.auth")

ALGORITHM = "EdDSA"
Role = Literal["customer", "admin"]
ROLES: tuple[str, ...] = ("customer", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller."""

    id: str
    role: str
    email: str | None = None
    expires_at: float | None = None  # the token's ``exp`` (Unix time): long-lived connections end there

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class InvalidToken(Exception):
    """The token is not acceptable; the message is safe to show to the caller."""


JwksSource = Callable[[], Awaitable[dict[str, Any]]]


def http_jwks_source(url: str, timeout: float = 3.0) -> JwksSource:
    async def fetch() -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.get(url) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    return fetch


class JwksCache:
    """The verification keys, fetched from ``source``; requests never wait on a fetch they don't need.

    - Keys older than ``ttl_seconds`` keep being served while one background fetch replaces them.
    - A token naming an unknown ``kid`` (a key rotation) waits for one shared fetch, at most once per
      ``MIN_REFRESH_SECONDS`` (garbage kids cannot hammer the JWKS endpoint).
    - A failed fetch is remembered: no fetch is tried again before a backoff (``BACKOFF_SECONDS``,
      doubling up to ``MAX_BACKOFF_SECONDS``), so an outage of the JWKS endpoint costs each request
      nothing: known keys keep working, unknown ones are refused at once.
    - Concurrent callers share one in-flight fetch; there is no lock to queue behind.
    """

    MIN_REFRESH_SECONDS = 5.0
    BACKOFF_SECONDS = 1.0
    MAX_BACKOFF_SECONDS = 60.0

    def __init__(self, source: JwksSource, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._next_attempt_at = float("-inf")  # no fetch before this (throttle after success, backoff after failure)
        self._failures = 0
        self._inflight: asyncio.Task[None] | None = None

    @property
    def failures(self) -> int:
        """Consecutive failed fetches (0 once one succeeds)."""
        return self._failures

    def _fetch(self) -> asyncio.Task[None] | None:
        """The in-flight fetch, started now if none runs and the throttle/backoff allows one."""
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        if self._clock() < self._next_attempt_at:
            return None
        self._inflight = asyncio.get_running_loop().create_task(self._refresh(), name="jwks-refresh")
        return self._inflight

    async def _refresh(self) -> None:
        try:
            data = await self._source()
            keys: dict[str, PyJWK] = {}
            for raw in data.get("keys", []):
                try:
                    key = PyJWK(raw)
                except jwt.PyJWKError:
                    log.warning("ignoring unusable JWKS entry %s", raw.get("kid"))
                    continue
                if key.key_id:
                    keys[key.key_id] = key
        except Exception as exc:
            self._failures += 1
            backoff = min(self.MAX_BACKOFF_SECONDS, self.BACKOFF_SECONDS * 2 ** (self._failures - 1))
            self._next_attempt_at = self._clock() + backoff
            log.warning("JWKS fetch failed (%d in a row; next try in %.0f s, serving %d cached keys): %s",
                        self._failures, backoff, len(self._keys), exc)
            return
        self._keys = keys
        self._failures = 0
        self._fetched_at = self._clock()
        self._next_attempt_at = self._fetched_at + self.MIN_REFRESH_SECONDS

    async def get(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            if self._fetched_at is not None and self._clock() - self._fetched_at > self._ttl:
                self._fetch()  # in the background: the last good keys serve meanwhile
            return key
        fetch = self._fetch()
        if fetch is not None:
            await asyncio.shield(fetch)  # one fetch for every waiter; a cancelled request leaves it running
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._failures:
            raise InvalidToken("signing keys are unavailable")
        raise InvalidToken("token signed with an unknown key")


class TokenVerifier:
    def __init__(self, settings: ServiceSettings, source: JwksSource | None = None) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.jwks = JwksCache(source or http_jwks_source(settings.jwks_url), settings.jwks_cache_seconds)

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self.jwks.get(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        if claims.get("typ") != "access":
            raise InvalidToken("not an access token")
        role = claims.get("role")
        if role not in ROLES:
            raise InvalidToken("token has no valid role")
        return Principal(id=str(claims["sub"]), role=str(role), email=claims.get("email"),
                         expires_at=float(claims["exp"]))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Authorization header must be 'Bearer <token>'")
    return token.strip()


class AuthMiddleware:
    """Verifies a bearer token when one is sent and puts the :class:`Principal` on ``scope['user']``.

    A request without a token passes through anonymous: the route's guard decides whether
    that is allowed. A bad token is refused with 401 (a WebSocket closed with 4401), whatever the route:
    here, or, with
    ``defer_rejection``, by :class:`RejectInvalidTokenMiddleware` further in, so that middleware
    in between (the gateway's rate limiter) sees and counts the request first.
    """

    def __init__(self, app: Any, verifier: TokenVerifier, defer_rejection: bool = False) -> None:
        self.app = app
        self.verifier = verifier
        self.defer_rejection = defer_rejection

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        auth = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                auth = value.decode("latin-1")
                break
        scope["user"] = None
        try:
            token = bearer_token(auth)
            if token is None and scope["type"] == "websocket":
                token = _query_token(scope)
            if token is not None:
                scope["user"] = await self.verifier.verify(token)
        except InvalidToken as exc:
            if not self.defer_rejection:
                await _reject(scope, receive, send, str(exc))
                return
            scope["auth_error"] = str(exc)
        await self.app(scope, receive, send)


class RejectInvalidTokenMiddleware:
    """The 401 for a bad token that :class:`AuthMiddleware` deferred."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        error = scope.get("auth_error")
        if error:
            await _reject(scope, receive, send, error)
            return
        await self.app(scope, receive, send)


async def _reject(scope: Any, receive: Any, send: Any, reason: str) -> None:
    """A bad token: 401 problem+json, or for a WebSocket close 4401."""
    if scope["type"] == "websocket":
        await _reject_websocket(receive, send)
    else:
        await _reject_http(scope, receive, send, reason)


async def _reject_http(scope: Any, receive: Any, send: Any, reason: str) -> None:
    from shopkit.errors import problem_response

    response = problem_response(
        401, reason, type_="invalid-token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )
    await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]


def _query_token(scope: Any) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token")
    return values[0] if values else None


async def _reject_websocket(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 4401, "reason": "invalid token"})


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException("authentication required: send 'Authorization: Bearer <access token>'")
    return user


def requires_customer(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: any signed-in caller (customers and admins)."""
    principal_of(connection)


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: admins only."""
    if not principal_of(connection).is_admin:
        raise PermissionDeniedException("admin role required")


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """Dependency: the verified caller (use with a guard)."""
    return principal_of(request)
