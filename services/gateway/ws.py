"""``/api/ws``: the WebSocket entry point, proxied to the alerts service's ``/alerts/ws``.

The token is checked here as there (close 4401 when invalid, missing or expired), so nothing
unauthenticated reaches alerts. Each connection has its own pump tasks: a slow client waits only on
itself, and one that does not take a frame within ``ws_send_timeout_seconds`` is closed with 1013.
Alerts' close codes pass through; over the caller's rate limit the upgrade is closed with 4429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from gateway.routing import API_PREFIX
from shopkit.auth import Principal, bearer_token
from shopkit.context import request_id_var

log = logging.getLogger("gateway.ws")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011
CONNECT_TIMEOUT_SECONDS = 5.0
UPSTREAM_HEARTBEAT_SECONDS = 15.0
# Codes that describe a connection state and must never be sent in a close frame (RFC 6455 7.4.1).
RESERVED_CLOSE_CODES = frozenset({1005, 1006, 1015})


class WebSocketUpstream:
    """A client session for long-lived upstream sockets (the HTTP proxy's session has a total timeout)."""

    def __init__(self, alerts_url: str) -> None:
        self.url = alerts_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/alerts/ws"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _token(socket: WebSocket[Any, Any, Any]) -> str | None:
    header = socket.headers.get("authorization")
    if header:
        return bearer_token(header)
    values = parse_qs(socket.scope.get("query_string", b"").decode("latin-1")).get("access_token")
    return values[0] if values else None


async def _client_to_upstream(socket: WebSocket[Any, Any, Any], upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message: dict[str, Any] = dict(await socket.receive())
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await upstream.send_str(message["text"])
        elif message.get("bytes") is not None:
            await upstream.send_bytes(message["bytes"])


async def _upstream_to_client(socket: WebSocket[Any, Any, Any], upstream: aiohttp.ClientWebSocketResponse,
                              send_timeout: float) -> str:
    """Pump frames until the alerts service closes; its close reason (empty when it gave none).

    Each send is bounded with ``asyncio.timeout`` (no task per frame, as ``wait_for`` makes on 3.11).
    """
    while True:
        message = await upstream.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            async with asyncio.timeout(send_timeout):
                await socket.send_text(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            async with asyncio.timeout(send_timeout):
                await socket.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return str(message.extra or "")
        elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ""


async def _until_expiry(expires_at: float | None) -> None:
    if expires_at is None:
        await asyncio.Event().wait()  # never
        return
    await asyncio.sleep(max(0.0, expires_at - time.time()))


def ws_route(upstream_for: WebSocketUpstream, send_timeout: float) -> Any:
    @websocket(f"{API_PREFIX}/ws", name="gateway-ws")
    async def shop_socket(socket: WebSocket[Any, Any, Any]) -> None:
        """Signed-in customers and admins: order status changes and alerts for the caller, as
        JSON ``{"type", "data"}`` frames."""
        principal = socket.scope.get("user")
        if not isinstance(principal, Principal):
            await socket.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        token = _token(socket)
        headers = {"Authorization": f"Bearer {token}"}
        if rid := request_id_var.get():
            headers["X-Request-ID"] = rid
        try:
            # WebSocket-level pings to the alerts service: a replica that vanished without closing
            # (node loss) is noticed within two heartbeats and the client is told to reconnect.
            upstream = await upstream_for.session.ws_connect(upstream_for.url, headers=headers,
                                                             heartbeat=UPSTREAM_HEARTBEAT_SECONDS,
                                                             autoping=True, max_msg_size=1 << 20)
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("alerts WebSocket unavailable: %s", err)
            await socket.close(code=CLOSE_TRY_AGAIN_LATER, reason="live updates unavailable; retry later")
            return

        await socket.accept()
        close_code: int | None = None
        reason = ""
        down = asyncio.create_task(_upstream_to_client(socket, upstream, send_timeout))
        up = asyncio.create_task(_client_to_upstream(socket, upstream))
        expiry = asyncio.create_task(_until_expiry(principal.expires_at))
        try:
            await asyncio.wait([down, up, expiry], return_when=asyncio.FIRST_COMPLETED)
            if expiry.done() and not up.done():
                close_code, reason = CLOSE_UNAUTHENTICATED, "token expired; reconnect with a fresh access token"
            elif down.done():
                exc = down.exception()
                if isinstance(exc, TimeoutError):
                    close_code, reason = CLOSE_TRY_AGAIN_LATER, "client too slow"
                elif exc is None:
                    # The alerts service closed: pass its code on (1000 normal, 1013 slow, 4401 auth...).
                    close_code = upstream.close_code
                    reason = down.result() or "alerts service closed the connection"
                    if close_code is None or close_code in RESERVED_CLOSE_CODES:
                        # Gone without a close frame (crash, lost heartbeat): the client should reconnect.
                        close_code, reason = CLOSE_TRY_AGAIN_LATER, "live updates interrupted; reconnect"
                elif not isinstance(exc, WebSocketDisconnect | OSError):
                    log.warning("WebSocket proxy failed: %r", exc)
                    close_code = CLOSE_INTERNAL_ERROR
        finally:
            for task in (down, up, expiry):
                task.cancel()
            for task in (down, up, expiry):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()
            if close_code is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket.close(code=close_code, reason=reason), 2.0)

    return shop_socket
