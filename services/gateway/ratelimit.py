"""Per-caller rate limiting in Redis: one atomic Lua call (EVALSHA) per request.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp):
each caller has a bucket of ``limit`` requests that refills continuously at ``limit`` per
``window``. A full bucket allows a burst of ``limit`` requests; after that one request per
``window / limit``. The clock is Redis's own (``TIME``), so every gateway replica agrees.

If Redis cannot be reached the gateway fails open (no limiting, a warning in the log): an
outage of the limiter must not become an outage of the shop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, cast

from litestar.datastructures import MutableScopeHeaders
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send, WebSocketAcceptEvent, WebSocketCloseEvent
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from gateway.headers import client_ip
from gateway.routing import API_PREFIX, is_anonymous, public_path
from shopkit.auth import Principal
from shopkit.errors import problem_response
from shopkit.metrics import RATE_LIMITED

log = logging.getLogger("gateway.ratelimit")

# KEYS[1] the caller's bucket; ARGV[1] limit (requests); ARGV[2] window (µs).
# Returns {allowed (0/1), remaining, retry_after_us, reset_us}. Times are integer microseconds:
# exact in a Lua double (< 2^53) and formatted with %.0f so no precision is lost in the stored value.
GCRA_LUA = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local interval = math.floor(window / limit)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((window - (new_tat - now)) / interval), 0, new_tat - now}
"""

REDIS_TIMEOUT_SECONDS = 0.5  # a slow limiter must not make every request slow
RETRY_REDIS_AFTER_SECONDS = 1.0  # after a failure, skip Redis briefly instead of timing out per request
WARN_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int
    reset_seconds: int
    window_seconds: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` (IETF httpapi draft) on every limited response; ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


def _ceil_seconds(microseconds: int) -> int:
    return max(0, math.ceil(microseconds / 1_000_000))


class RateLimiter:
    """Counts requests per caller identity (``user:<id>`` or ``ip:<address>``) under ``<namespace>``."""

    def __init__(self, limit: int, window_seconds: int, namespace: str = "") -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.prefix = f"{namespace}gateway:ratelimit:"
        self._script: AsyncScript | None = None
        self._skip_until = 0.0
        self._warned_at = -math.inf

    def bind(self, redis: Redis) -> None:
        self._script = redis.register_script(GCRA_LUA)

    def key(self, identity: str) -> str:
        return self.prefix + identity

    async def hit(self, identity: str) -> Decision | None:
        """Count one request; None when the limiter is unavailable (the caller then fails open)."""
        if self._script is None or time.monotonic() < self._skip_until:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                raw: list[Any] = await self._script(
                    keys=[self.key(identity)], args=[self.limit, self.window_seconds * 1_000_000]
                )
        except Exception as exc:
            self._skip_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
            if time.monotonic() - self._warned_at > WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                log.warning("rate limiter unavailable, serving without limits (fail open): %r", exc)
            return None
        allowed, remaining, retry_us, reset_us = (int(v) for v in raw)
        return Decision(
            allowed=bool(allowed),
            limit=self.limit,
            remaining=max(0, remaining),
            retry_after_seconds=max(1, _ceil_seconds(retry_us)) if not allowed else 0,
            reset_seconds=_ceil_seconds(reset_us),
            window_seconds=self.window_seconds,
        )


def identity_of(scope: Scope, trust_forwarded_for: bool) -> str:
    """Signed-in callers are limited per user id, anonymous ones per client IP.

    The anonymous endpoints (login, registration, refresh) count per client IP whatever token is attached.
    """
    user = scope.get("user")
    anonymous = False
    if scope["type"] == "http":
        anonymous = is_anonymous(cast("HTTPScope", scope)["method"], public_path(scope).removeprefix(API_PREFIX))
    if isinstance(user, Principal) and not anonymous:
        return f"user:{user.id}"
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = None
    if trust_forwarded_for:
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
        forwarded = ", ".join(values) or None
    return f"ip:{client_ip(peer, forwarded, trust_forwarded_for)}"


CLOSE_RATE_LIMITED = 4429


async def refuse_upgrade(decision: Decision, receive: Receive, send: Send) -> None:
    """Close an over-limit WebSocket upgrade with 4429; the reason says when to retry."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left already
    accept: WebSocketAcceptEvent = {"type": "websocket.accept", "subprotocol": None, "headers": []}
    close: WebSocketCloseEvent = {"type": "websocket.close", "code": CLOSE_RATE_LIMITED,
                                  "reason": f"rate limit of {decision.limit} per {decision.window_seconds}s "
                                            f"exceeded; retry after {decision.retry_after_seconds}s"}
    await send(accept)
    await send(close)


def is_limited_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


class RateLimitMiddleware:
    """Runs after the auth middleware (so the caller's identity is known) for everything under ``/api``.

    A request with an invalid token is counted here too (against its IP, as it has no verified
    identity), then refused with 401 after this middleware, so bad tokens cannot be sprayed unlimited.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter, trust_forwarded_for: bool) -> None:
        self.app = app
        self.limiter = limiter
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not is_limited_path(public_path(scope)):
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.hit(identity_of(scope, self.trust_forwarded_for))
        if decision is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # An upgrade is one request of the caller's bucket; over the limit the socket is accepted and
            # closed at once with 4429 (a close before accepting would reach the client as a bare 403).
            if decision.allowed:
                await self.app(scope, receive, send)
            else:
                RATE_LIMITED.inc()
                await refuse_upgrade(decision, receive, send)
            return
        extra = decision.headers()
        if not decision.allowed:
            RATE_LIMITED.inc()
            response = problem_response(
                429,
                f"Rate limit of {decision.limit} requests per {decision.window_seconds}s exceeded; "
                f"retry after {decision.retry_after_seconds}s.",
                type_="rate-limited",
                headers=extra,
                instance=public_path(scope),
            )
            await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_limits)
