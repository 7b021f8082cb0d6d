"""An EventBus and a database of their own for tests that drive the kit's handlers directly."""

from __future__ import annotations

import uuid

from shopkit.broker import EventBus, create_broker
from shopkit.settings import ServiceSettings


def bus_for(service: str) -> EventBus:
    """The EventBus of ``service`` in a fresh namespace (FastStream's TestRabbitBroker or a real broker)."""
    settings = ServiceSettings(service_name=service, namespace=f"h{uuid.uuid4().hex[:6]}.")
    return EventBus(settings, create_broker(settings), retry_backoff_seconds=0)
