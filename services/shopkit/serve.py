"""Run a service with uvicorn (uvloop + httptools): ``python -m <service>`` calls :func:`serve`."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn
from litestar import Litestar

from shopkit.settings import ServiceSettings


def serve(create_app: Callable[[ServiceSettings], Litestar], settings: ServiceSettings) -> None:
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
