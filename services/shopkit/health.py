"""``/health/live`` (the process answers) and ``/health/ready`` (what it cannot work without answers).

Dependencies a service works without (``Uses(ready_without=...)``) are checked and reported as
``degraded`` but never make it unready: a RabbitMQ outage must not take the API out of the load
balancer when the outbox holds the events meanwhile.

Once the service is shutting down (:func:`start_draining`, on SIGTERM: ``shopkit.serve``) readiness
answers 503 ``shutting_down`` without running the checks, so load balancers take the replica out
before it stops listening.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar, Response, get
from litestar.datastructures import State

ReadinessCheck = Callable[[], Awaitable[Any]]
CHECK_TIMEOUT_SECONDS = 2.0
DRAINING = "shutting_down"


def start_draining(app: Litestar) -> None:
    """From now on ``/health/ready`` answers 503: the service is shutting down (a flag; signal-handler safe)."""
    app.state[DRAINING] = True


@get("/health/live", summary="Liveness probe", description="Public. 200 while the process serves HTTP.",
     tags=["health"], sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", summary="Readiness probe", tags=["health"],
     description="Public. 200 while every dependency the service cannot work without answers (`status` `ok`, "
                 "or `degraded` when one it works without is down), else 503 `unavailable`. `checks` gives each "
                 "dependency's `status` (`up`/`down`) and whether it is `required`; `degraded` lists the optional "
                 "ones that are down. 503 `shutting_down` once the service is shutting down.")
async def ready(state: State) -> Response[dict[str, Any]]:
    if state.get(DRAINING):
        return Response({"status": DRAINING, "degraded": [], "checks": {}}, status_code=503)
    checks: dict[str, ReadinessCheck] = state.get("readiness_checks", {})
    optional: set[str] = state.get("optional_checks", set())

    async def run(check: ReadinessCheck) -> str:
        try:
            result = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception:
            return "down"
        return "down" if result is False else "up"

    results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
    ok = all(v == "up" for name, v in results.items() if name not in optional)
    degraded = sorted(name for name, v in results.items() if name in optional and v != "up")
    status = "unavailable" if not ok else "degraded" if degraded else "ok"
    body = {"status": status, "degraded": degraded,
            "checks": {name: {"status": v, "required": name not in optional} for name, v in results.items()}}
    return Response(body, status_code=200 if ok else 503)


HEALTH_HANDLERS = [live, ready]
