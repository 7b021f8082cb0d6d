"""Helpers for the gateway's integration tests.

``FakeService`` is a tiny aiohttp server in the test process standing in for a service: it
records every request it gets and answers by path (echo, slow, large, with a Location...).
``start_gateways`` runs extra gateway processes (``python -m gateway``, as the shop does) with
their own configuration, so destructive tests never disturb the session's shop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.procs import Proc, free_port
from devtools.shop import LocalShop

BIG_BODY = bytes(range(256)) * 4096  # 1 MiB, streamed by the fake service without a length


@dataclass
class FakeService:
    """Records requests; ``/health/ready`` answers 200, ``/slow/...`` waits, ``/big`` streams 1 MiB."""

    name: str
    port: int = field(default_factory=free_port)
    requests: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = True
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeService:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.release = asyncio.Event()

    def seen(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["headers"].get("x-request-id") == [request_id]]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/health/ready":
            if "slow" in self.name:
                await self._wait()
            return web.json_response({"status": "ok"}, status=200 if self.ready else 503)
        if request.path == "/schema/openapi.json":
            return web.json_response({"openapi": "3.1.0", "paths": {f"/{self.name}": {"get": {"summary": self.name}}}})
        body = await request.read()
        headers: dict[str, list[str]] = {}
        for key, value in request.headers.items():
            headers.setdefault(key.lower(), []).append(value)
        record = {
            "method": request.method,
            "raw_path": request.raw_path,
            "path": request.path,
            "query": request.query_string,
            "headers": headers,
            "body": body.decode("latin-1"),
        }
        self.requests.append(record)
        tail = request.path.rsplit("/", 1)[-1]
        if tail == "slow":
            await self._wait()
        if tail == "created":
            return web.json_response(
                {"id": "o1"}, status=201,
                headers={"Location": "/orders/o1", "Retry-After": "7", "X-Custom": "kept", "Set-Cookie": "s=1"},
            )
        if tail == "big":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for offset in range(0, len(BIG_BODY), 65536):
                await response.write(BIG_BODY[offset:offset + 65536])
            await response.write_eof()
            return response
        if tail == "empty":
            return web.Response(status=204)
        return web.json_response({"service": self.name, **record}, headers={"X-Upstream": self.name})

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), 30)


@dataclass
class GatewayProc:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api"


def start_gateways(shop: LocalShop, configs: dict[str, dict[str, str]], timeout: float = 60) -> dict[str, GatewayProc]:
    """Extra gateway processes sharing the shop's JWKS, Redis and namespace unless ``configs`` says otherwise."""
    started: dict[str, GatewayProc] = {}
    try:
        for name, env in configs.items():
            port = free_port()
            full = {
                **shop.common_env(),
                "MICROSHOP_PORT": str(port),
                "MICROSHOP_RATE_LIMIT_REQUESTS": "1000000",
                **env,
            }
            proc = Proc(name=name, argv=[sys.executable, "-m", "gateway"], env=full,
                        ready_url=f"http://127.0.0.1:{port}/health/ready")
            started[name] = GatewayProc(proc.start(), port)
        for gateway in started.values():
            gateway.proc.wait_ready(timeout)
    except Exception:
        stop_gateways(started)
        raise
    return started


def stop_gateways(gateways: dict[str, GatewayProc]) -> None:
    for gateway in gateways.values():
        gateway.proc.stop()


def service_urls(**urls: str) -> dict[str, str]:
    return {f"MICROSHOP_{name.upper()}_URL": url for name, url in urls.items()}


async def wait_for(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result if isinstance(result, bool) else await result:
            return True
        await asyncio.sleep(0.05)
    return False
