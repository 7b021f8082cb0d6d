"""The services on the event bus, and each one's ``EventBus`` as its app declares it (built, never started)."""

from __future__ import annotations

from importlib import import_module

from shopkit import registry
from shopkit.messaging.bus import EventBus
from shopkit.settings import ServiceSettings

CONSUMERS = registry.names(registry.on_bus())
"""The services that consume or publish events (shopkit.registry)."""


def service_bus(name: str) -> EventBus:
    """A service's EventBus as its app declares it (the app is built, nothing is connected)."""
    module = import_module(f"{name}.app")
    app = module.create_app(ServiceSettings(service_name=name))
    bus: EventBus | None = app.state["service"].bus
    assert bus is not None, f"{name} consumes no events"
    return bus


def consumer_queues(services: tuple[str, ...] | list[str]) -> list[str]:
    """The consumer queues (without namespace) the given services declare."""
    return [sub.consumer_queue for name in services for sub in service_bus(name).subscriptions]
