"""``/api/health``: every service's readiness, probed concurrently within one timeout.

Shape (docs/architecture.md)::

    {"status": "ok" | "degraded", "services": {"customers-service": "running" | "down", ...},
     "degraded": {"products-service": ["broker", "redis"], ...}}

``status`` is ``ok`` only when every enabled service runs undegraded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Literal

import aiohttp

ServiceState = Literal["running", "down"]


Probe = tuple[ServiceState, list[str]]


async def probe(session: aiohttp.ClientSession, base_url: str, timeout_seconds: float) -> Probe:
    """The service's state and the optional dependencies it reports down."""
    try:
        async with session.get(
            f"{base_url}/health/ready", timeout=aiohttp.ClientTimeout(total=timeout_seconds), allow_redirects=False
        ) as resp:
            raw = await resp.read()
            if resp.status != 200:
                return "down", []
    except (aiohttp.ClientError, TimeoutError):
        return "down", []
    try:
        degraded = json.loads(raw).get("degraded", [])
    except (ValueError, AttributeError):
        degraded = []
    return "running", sorted(str(d) for d in degraded) if isinstance(degraded, list) else []


async def aggregate_health(
    session: aiohttp.ClientSession, urls: Mapping[str, str], timeout_seconds: float
) -> dict[str, object]:
    names = list(urls)
    # Bounded even if a probe ignored its own timeout: the answer comes within ``timeout_seconds`` (+ scheduling).
    tasks = [asyncio.ensure_future(probe(session, urls[name], timeout_seconds)) for name in names]
    done, pending = await asyncio.wait(tasks, timeout=timeout_seconds + 0.25)
    for task in pending:
        task.cancel()
    probes: dict[str, Probe] = {
        f"{name}-service": task.result() if task in done else ("down", [])
        for name, task in zip(names, tasks, strict=True)
    }
    states = {name: state for name, (state, _) in probes.items()}
    degraded = {name: deps for name, (_, deps) in probes.items() if deps}
    status = "ok" if all(state == "running" for state in states.values()) and not degraded else "degraded"
    return {"status": status, "services": states, "degraded": degraded}
