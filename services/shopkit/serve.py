"""Run a service with uvicorn (uvloop + httptools): ``python -m <service>`` calls :func:`serve`."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from litestar import Litestar

from shopkit.settings import ServiceSettings


def serve(
    create_app: Callable[[ServiceSettings], Litestar], settings: ServiceSettings, *, proxy_headers: bool = True
) -> None:
    """``proxy_headers=False`` keeps the peer address as the client (the gateway decides itself what to trust)."""
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=proxy_headers,
        timeout_graceful_shutdown=10,
    )
