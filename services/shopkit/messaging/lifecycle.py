"""Connecting a service's bus when RabbitMQ may be away: try once, else keep trying in the background.

A service that serves without the broker (``Uses(ready_without={"broker"})``) starts anyway and
connects, then starts its consumers, as soon as RabbitMQ answers; its outbox holds the events meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from shopkit.messaging.bus import EventBus

log = logging.getLogger("shopkit.app")

BROKER_CONNECT_TIMEOUT_SECONDS = 15.0  # a refused connection fails at once; this bounds a hanging broker
BROKER_RETRY_MAX_SECONDS = 10.0


async def try_connect(bus: EventBus) -> bool:
    try:
        await asyncio.wait_for(bus.connect(), BROKER_CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("RabbitMQ unavailable (%s): serving without it, connecting in the background", exc)
        return False
    return True


async def try_start(bus: EventBus) -> bool:
    try:
        await asyncio.wait_for(bus.start(), BROKER_CONNECT_TIMEOUT_SECONDS * 2)
    except Exception as exc:
        log.warning("could not start consuming (%s): retrying in the background", exc)
        return False
    return True


async def start_consuming(bus: EventBus) -> None:
    """Connect and start the consumers, retrying with capped backoff until it works (a background task)."""
    delay = 1.0
    while True:
        try:
            await asyncio.wait_for(bus.start(), BROKER_CONNECT_TIMEOUT_SECONDS * 2)
        except Exception as exc:
            log.warning("RabbitMQ still unavailable (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BROKER_RETRY_MAX_SECONDS)
        else:
            log.info("connected to RabbitMQ; consumers started")
            return
