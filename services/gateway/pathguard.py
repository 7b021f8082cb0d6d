"""Only normal paths pass the edge: the access rules and body contracts are never matched against a
path the services could read differently (``//api//products``, ``/api/./products``, ``%2F`` tricks)."""

from __future__ import annotations

from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.routing import non_normal_path
from shopkit.errors import problem_response


class NormalPathMiddleware:
    """400 problem+json (WebSockets: close 1008) for any request whose raw path is not in normal form."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reason = None
        if scope["type"] in ("http", "websocket"):
            reason = non_normal_path(scope.get("raw_path") or str(scope["path"]).encode("utf-8"))
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "path not in normal form"})
        else:
            response = problem_response(400, f"Refused: {reason}. Send the path in normal form.",
                                        type_="malformed-request")
            await response.to_asgi_response(app=None, request=None)(scope, receive, send)  # type: ignore[arg-type]
