"""The proxy hop: ``/api/<path>`` → the owning service, through one pooled aiohttp session.

Requests are buffered (bodies are small JSON documents, capped by ``max_body_bytes``, and must
be validated before they are forwarded); responses are passed through faithfully: status,
headers (minus hop-by-hop ones) and body, streamed when large or of unknown length.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import aiohttp
from litestar.types import Receive, Scope, Send
from yarl import URL

from gateway.contracts import ContractRegistry
from gateway.headers import as_raw, decode_raw, downstream_response_headers, upstream_request_headers
from gateway.routing import API_PREFIX, Access, access_for, has_dot_segment, public_path, service_for
from gateway.settings import Settings
from shopkit.auth import Principal
from shopkit.context import request_id_var
from shopkit.errors import ProblemError
from shopkit.requestid import new_request_id

log = logging.getLogger("gateway.proxy")

# Responses up to this size with a Content-Length are read whole and sent in one message;
# larger or unsized ones are streamed chunk by chunk.
BUFFER_RESPONSE_BYTES = 256 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
CONNECT_TIMEOUT_SECONDS = 3.0
# Idle pooled connections are closed by us before the services' uvicorn closes them (its
# keep-alive timeout is 5 s): otherwise a request can race the server's close and fail with 502.
KEEPALIVE_SECONDS = 4.0


class Upstreams:
    """The services' base URLs and the one HTTP client session the gateway talks to them with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = settings.service_urls()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=512, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS, ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self.settings.upstream_timeout_seconds,
                sock_connect=min(CONNECT_TIMEOUT_SECONDS, self.settings.upstream_timeout_seconds),
            ),
            # Never keep one caller's cookies for the next caller.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bytes pass through as the service encoded them.
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream session is not started (lifespan not run?)")
        return self._session

    def url(self, service: str, raw_path_and_query: str) -> URL:
        # encoded=True: forward the caller's path bytes as they were, without re-normalising them.
        return URL(self.urls[service] + raw_path_and_query, encoded=True)


class Proxy:
    """The ASGI app mounted at ``/api``: everything the gateway does not answer itself."""

    def __init__(self, settings: Settings, upstreams: Upstreams, contracts: ContractRegistry) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.contracts = contracts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # /api/ws is a route of its own (gateway/ws.py); any other WebSocket path has no endpoint.
            await receive()
            await send({"type": "websocket.close", "code": 4404, "reason": "no such WebSocket endpoint"})
            return
        full_path = public_path(scope)
        scope["path"] = full_path  # undo the mount's cut, for problem documents and logs
        raw_path: bytes = scope.get("raw_path") or full_path.encode("utf-8")
        prefix = API_PREFIX.encode()
        if not raw_path.startswith(prefix + b"/"):
            raise ProblemError(404, f"No route for {full_path}.", type_="not-found")
        raw_service_path = raw_path[len(prefix):].decode("latin-1")
        path = unquote(raw_service_path)
        method = str(scope.get("method", "GET"))

        service = service_for(path)
        if service is None:
            raise ProblemError(404, f"No service serves {API_PREFIX}{path}.", type_="not-found")
        if has_dot_segment(path):
            raise ProblemError(400, "Paths must not contain '.' or '..' segments.", type_="malformed-request")
        if service not in self.upstreams.urls:
            raise ProblemError(404, f"The {service} service is disabled in this shop.", type_="service-disabled")
        principal = scope.get("user")
        principal = principal if isinstance(principal, Principal) else None
        check_access(access_for(method, path), principal)

        body = await read_body(scope, receive, self.settings.max_body_bytes)
        if body is None:  # the caller hung up: nobody to answer
            return
        self.contracts.validate(method, path, body)

        query: bytes = scope.get("query_string", b"")
        target = raw_service_path + ("?" + query.decode("latin-1") if query else "")
        headers = upstream_request_headers(
            decode_raw(scope["headers"]),
            request_id=request_id_var.get() or new_request_id(),
            peer=peer_of(scope),
            scheme=scope.get("scheme", "http"),
            user_id=principal.id if principal else None,
            user_role=principal.role if principal else None,
            trust_forwarded_for=self.settings.trust_forwarded_for,
        )
        await self.forward(service, method, target, headers, body, send)

    async def forward(
        self, service: str, method: str, target: str, headers: Any, body: bytes, send: Send, *, retry: bool = True
    ) -> None:
        url = self.upstreams.url(service, target)
        started = False

        async def start(status: int, out_headers: list[tuple[str, str]]) -> None:
            nonlocal started
            await send({"type": "http.response.start", "status": status, "headers": as_raw(out_headers)})
            started = True

        async def body_part(chunk: bytes, more: bool = False) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": more})

        try:
            async with self.upstreams.session.request(
                method, url, headers=headers, data=body if body else None, allow_redirects=False
            ) as upstream:
                out_headers = downstream_response_headers(
                    decode_raw(upstream.raw_headers), self.upstreams.urls[service]
                )
                length = upstream.content_length
                if method == "HEAD" or upstream.status in (204, 304):
                    if length is not None and method == "HEAD":
                        out_headers.append(("content-length", str(length)))
                    await start(upstream.status, out_headers)
                    await body_part(b"")
                elif length is not None and length <= BUFFER_RESPONSE_BYTES:
                    payload = await upstream.read()
                    out_headers.append(("content-length", str(len(payload))))
                    await start(upstream.status, out_headers)
                    await body_part(payload)
                else:
                    await start(upstream.status, out_headers)
                    async for chunk in upstream.content.iter_any():
                        await body_part(chunk, more=True)
                    await body_part(b"")
        except aiohttp.ConnectionTimeoutError as exc:
            raise self._failure(503, service, "did not accept a connection in time", exc, started) from None
        except TimeoutError:
            log.warning("upstream %s timed out on %s %s", service, method, target.split("?", 1)[0])
            if started:
                raise
            raise ProblemError(
                504, f"The {service} service did not answer within {self.settings.upstream_timeout_seconds:g}s.",
                type_="upstream-timeout",
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise self._failure(503, service, "is unavailable", exc, started) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # A pooled keep-alive connection the service closed (e.g. it restarted): one retry on a
            # fresh connection is safe for methods without side effects.
            if retry and not started and method in IDEMPOTENT:
                await self.forward(service, method, target, headers, body, send, retry=False)
                return
            raise self._failure(502, service, "closed the connection", exc, started) from None
        except aiohttp.ClientError as exc:
            raise self._failure(502, service, "sent an invalid response", exc, started) from None

    def _failure(self, status: int, service: str, what: str, exc: Exception, started: bool) -> Exception:
        log.warning("upstream %s %s: %r", service, what, exc)
        if started:
            # Too late for a problem document: the connection is dropped so the client sees a failure.
            return exc
        type_ = "upstream-unavailable" if status == 503 else "bad-gateway"
        headers = {"Retry-After": "1"} if status == 503 else None
        return ProblemError(status, f"The {service} service {what}; try again shortly.", type_=type_, headers=headers)


def peer_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def check_access(access: Access, principal: Principal | None) -> None:
    if access is Access.PUBLIC:
        return
    if principal is None:
        raise ProblemError(
            401, "Authentication required: send 'Authorization: Bearer <access token>'.",
            type_="authentication-required", headers={"WWW-Authenticate": 'Bearer realm="microshop"'},
        )
    if access is Access.ADMIN and not principal.is_admin:
        raise ProblemError(403, "This operation needs the admin role.", type_="forbidden")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body (None if the caller disconnected), refused with 413 once it exceeds ``limit``."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise ProblemError(400, "Invalid Content-Length header.", type_="malformed-request") from None
            if declared > limit:
                raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"Request bodies are limited to {limit} bytes.", type_="body-too-large")
