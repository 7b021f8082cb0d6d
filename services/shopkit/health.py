"""``/health/live`` (the process answers) and ``/health/ready`` (its dependencies answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Response, get
from litestar.datastructures import State

ReadinessCheck = Callable[[], Awaitable[Any]]
CHECK_TIMEOUT_SECONDS = 2.0


@get("/health/live", summary="Liveness probe", description="Public. 200 while the process serves HTTP.",
     tags=["health"], sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", summary="Readiness probe", tags=["health"],
     description="Public. 200 when every dependency this service uses (Mongo, Redis, broker) answers, else 503.")
async def ready(state: State) -> Response[dict[str, Any]]:
    checks: dict[str, ReadinessCheck] = state.get("readiness_checks", {})

    async def run(check: ReadinessCheck) -> str:
        try:
            result = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception:
            return "down"
        return "down" if result is False else "up"

    results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
    ok = all(v == "up" for v in results.values())
    return Response({"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503)


HEALTH_HANDLERS = [live, ready]
