"""Background tasks a service runs beside its requests (relays, sweepers, listeners)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each task (``None`` is skipped) and wait until it has stopped; its cancellation is swallowed."""
    for task in tasks:
        if task is None:
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
