"""Run a service with uvicorn (uvloop + httptools): ``python -m <service>`` calls :func:`serve`.

Shutdown (SIGTERM or SIGINT) is graceful: readiness answers 503 at once, the listener keeps serving
``shutdown_drain_seconds`` while load balancers notice (a second signal skips that), the requests in
flight finish, then the app's lifespan ends (consumers, outbox, connections; ``shopkit.app``).
docs/kubernetes.md, "Shutdown and rolling restarts", has the why.
"""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from litestar import Litestar

from shopkit.health import start_draining
from shopkit.settings import ServiceSettings


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, on the first SIGTERM/SIGINT, fails readiness and keeps serving ``drain`` seconds."""

    def __init__(self, config: uvicorn.Config, *, drain_seconds: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.on_drain = on_drain
        self.drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_until is None and sig in (signal.SIGTERM, signal.SIGINT):
            self.on_drain()  # a flag: safe in a signal handler
            self.drain_until = time.monotonic() + self.drain_seconds
            if self.drain_seconds > 0:
                self._captured_signals.append(sig)  # re-raised after the shutdown, as uvicorn does
                return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


OLDER_GENERATIONS_EVERY = 20  # an older generation is collected once every this many collections of the younger


def tune_gc(young_threshold: int) -> None:
    """Freeze what exists (modules, the app, its settings: never garbage, never scanned again) and collect the
    young generation every ``young_threshold`` allocations (0: Python's defaults, nothing frozen).

    A service allocates a great deal per request and per delivery, almost all of it freed by reference
    counting; with Python's default threshold (700) the collector runs hundreds of times a second under load
    and its pauses show as the latency tail (docs/saga.md, "Garbage collection").
    """
    if not young_threshold:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, OLDER_GENERATIONS_EVERY, OLDER_GENERATIONS_EVERY)


def serve(
    create_app: Callable[[ServiceSettings], Litestar], settings: ServiceSettings, *, proxy_headers: bool = True
) -> None:
    """``proxy_headers=False`` keeps the peer address as the client (the gateway decides itself what to trust)."""
    app = create_app(settings)
    tune_gc(settings.gc_young_threshold)  # once the app is built: it is frozen with everything else
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=proxy_headers,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    DrainingServer(config, drain_seconds=settings.shutdown_drain_seconds, on_drain=lambda: start_draining(app)).run()
