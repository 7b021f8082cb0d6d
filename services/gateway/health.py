"""``/api/health``: every service's readiness, probed concurrently within one timeout.

Shape (fixed by the contract, docs/architecture.md)::

    {"status": "ok" | "degraded", "services": {"customers-service": "running" | "down", ...}}

A service disabled by configuration (analytics) has no key, so it cannot degrade the shop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Literal

import aiohttp

ServiceState = Literal["running", "down"]


async def probe(session: aiohttp.ClientSession, base_url: str, timeout_seconds: float) -> ServiceState:
    try:
        async with session.get(
            f"{base_url}/health/ready", timeout=aiohttp.ClientTimeout(total=timeout_seconds), allow_redirects=False
        ) as resp:
            await resp.read()
            return "running" if resp.status == 200 else "down"
    except (aiohttp.ClientError, TimeoutError):
        return "down"


async def aggregate_health(
    session: aiohttp.ClientSession, urls: Mapping[str, str], timeout_seconds: float
) -> dict[str, object]:
    names = list(urls)
    # Bounded even if a probe ignored its own timeout: the answer comes within ``timeout_seconds`` (+ scheduling).
    tasks = [asyncio.ensure_future(probe(session, urls[name], timeout_seconds)) for name in names]
    done, pending = await asyncio.wait(tasks, timeout=timeout_seconds + 0.25)
    for task in pending:
        task.cancel()
    states: dict[str, ServiceState] = {
        f"{name}-service": task.result() if task in done else "down" for name, task in zip(names, tasks, strict=True)
    }
    status = "ok" if all(state == "running" for state in states.values()) else "degraded"
    return {"status": status, "services": states}
