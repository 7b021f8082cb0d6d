"""``/alerts/ws``: the live feed of order status changes and alerts for the connected user.

The token comes as a Bearer header or an ``access_token`` query parameter (so the gateway's
``/api/ws`` can pass either); without a valid one the socket closes with 4401 before it is accepted.
The server sends ``connected`` once subscribed, then frames as they come, and ``ping`` when idle.
Close codes: 1000 normal, 1013 client too slow, 1011 server error, 4401 token expired, 4429 too many
sockets or attempts (``alerts.sockets``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.status_codes import WS_1011_INTERNAL_ERROR

from alerts.messages import CONNECTED, frame, ping_frame
from alerts.push import PushHub, Subscriber
from alerts.settings import Settings
from alerts.sockets import RENEW_EVERY_SECONDS, SocketLimits
from shopkit.auth import Principal

log = logging.getLogger("alerts.ws")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_MANY = 4429
CLOSE_TIMEOUT_SECONDS = 2.0


async def _send_frames(socket: WebSocket[Any, Any, Any], sub: Subscriber, settings: Settings) -> None:
    # asyncio.timeout, not wait_for: no task per frame (wait_for wraps the awaitable in one on 3.11).
    while True:
        try:
            async with asyncio.timeout(settings.ws_heartbeat_seconds):
                text = await sub.queue.get()
        except TimeoutError:
            text = ping_frame()
        async with asyncio.timeout(settings.ws_send_timeout_seconds):
            await socket.send_text(text)


async def _read_until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _until_expiry(expires_at: float | None) -> None:
    if expires_at is None:
        await asyncio.Event().wait()  # never
        return
    await asyncio.sleep(max(0.0, expires_at - time.time()))


async def _renew_lease(limits: SocketLimits, user_id: str, member: str | None) -> None:
    """Keeps the socket's lease alive; never ends on its own (a failed renewal is logged by ``renew``)."""
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        if member is not None:
            with contextlib.suppress(Exception):
                await limits.renew(user_id, member)


@websocket("/alerts/ws", name="alerts-ws")
async def alerts_socket(socket: WebSocket[Any, Any, Any], hub: NamedDependency[PushHub],
                        settings: NamedDependency[Settings], sockets: NamedDependency[SocketLimits]) -> None:
    principal = socket.scope.get("user")
    if not isinstance(principal, Principal):
        await socket.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
        return
    await socket.accept()  # first, so that a refusal's close code reaches the client
    admission = await sockets.acquire(principal.id)
    if admission.refused is not None:
        log.info("refused a socket of %s: %s", principal.id, admission.refused)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(socket.close(code=CLOSE_TOO_MANY, reason=admission.refused), CLOSE_TIMEOUT_SECONDS)
        return
    try:
        await _serve(socket, hub, settings, principal,
                     lambda: _renew_lease(sockets, principal.id, admission.member))
    finally:
        if admission.member is not None:
            await sockets.release(principal.id, admission.member)


async def _serve(socket: WebSocket[Any, Any, Any], hub: PushHub, settings: Settings, principal: Principal,
                 renew: Callable[[], Coroutine[Any, Any, None]]) -> None:
    sub = Subscriber(settings.ws_queue_size)
    await hub.register(sub, hub.channels.for_principal(principal.id, principal.role))
    tasks: list[asyncio.Task[None]] = []
    close_code: int | None = None
    reason = ""
    try:
        await socket.send_text(frame(CONNECTED, {
            "user_id": principal.id, "role": principal.role,
            "heartbeat_seconds": settings.ws_heartbeat_seconds,
        }))
        sender = asyncio.create_task(_send_frames(socket, sub, settings))
        reader = asyncio.create_task(_read_until_closed(socket))
        overflow = asyncio.create_task(sub.overflowed.wait())
        expiry = asyncio.create_task(_until_expiry(principal.expires_at))
        tasks = [sender, reader, overflow, expiry, asyncio.create_task(renew())]  # type: ignore[list-item]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            close_code = None  # the client left: nothing more to send
        elif expiry.done():
            close_code, reason = CLOSE_UNAUTHENTICATED, "token expired; reconnect with a fresh access token"
        elif overflow.done() or (sender.done() and isinstance(sender.exception(), TimeoutError)):
            close_code, reason = CLOSE_TRY_AGAIN_LATER, "client too slow; reconnect and read GET /alerts"
            log.info("closing a slow alerts socket of %s (%d frames dropped)", principal.id, sub.dropped)
        else:
            exc = sender.exception() if sender.done() else None
            # A send on a socket the client already closed is a normal end, not a server error.
            close_code = None if exc is not None and _is_disconnect(exc) else WS_1011_INTERNAL_ERROR
            if close_code is not None:
                log.warning("alerts socket of %s failed: %r", principal.id, exc)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await hub.unregister(sub)
        if close_code is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(socket.close(code=close_code, reason=reason), CLOSE_TIMEOUT_SECONDS)


def _is_disconnect(exc: BaseException) -> bool:
    from litestar.exceptions import WebSocketDisconnect

    return isinstance(exc, WebSocketDisconnect | OSError) or "disconnect" in type(exc).__name__.lower()
