"""The shop's AsyncAPI document, generated with FastStream's own tooling from the event catalogue.

``python -m shopkit.asyncapi`` prints it (``make asyncapi`` writes ``docs/asyncapi.json``; a test
checks the file is current). Channels are the queues the services really declare (their apps
are built, not started, and their subscriptions read), each with the CloudEvents envelope of its
catalogue model as the payload; the producer's side of every event is a publish operation on
its exchange.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import import_module
from typing import Any

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from faststream.specification import AsyncAPI
from pydantic import BaseModel, create_model

from shopkit import registry
from shopkit.broker import EventBus
from shopkit.contracts.events import CATALOGUE, EventData
from shopkit.events import CloudEvent
from shopkit.settings import ServiceSettings

# The services with an event bus (shopkit.registry).
CONSUMERS = registry.names(registry.on_bus())


@cache
def envelope(model: type[EventData]) -> type[BaseModel]:
    """The CloudEvents envelope whose ``data`` is ``model``: what a message of that type looks like on the wire."""
    return create_model(  # type: ignore[no-any-return,call-overload]
        f"{model.__name__}Event", __base__=CloudEvent, __doc__=model.__doc__, data=(model, ...))


def service_bus(name: str) -> EventBus:
    """A service's EventBus as its app declares it (the app is built, nothing is connected)."""
    module = import_module(f"{name}.app")
    app = module.create_app(ServiceSettings(service_name=name))
    bus: EventBus | None = app.state["service"].bus
    assert bus is not None, f"{name} consumes no events"
    return bus


def producers() -> dict[str, str]:
    """Event type → the service that publishes it, from the services' own ``publishes`` declarations."""
    found: dict[str, str] = {}
    for service in CONSUMERS:
        for model in service_bus(service).publishes or ():
            assert model.TYPE not in found, f"{model.TYPE} published by {found[model.TYPE]} and {service}"
            found[model.TYPE] = service
    return found


def document() -> dict[str, Any]:
    producer = producers()
    broker = RabbitBroker("amqp://broker:5672/")
    for service in CONSUMERS:
        for sub in service_bus(service).subscriptions:
            model = CATALOGUE[sub.routing_key]
            schema = envelope(model)

            async def consume(body: schema) -> None:  # type: ignore[valid-type]
                return None

            consume.__name__ = f"{sub.consumer}_{sub.routing_key}"
            broker.subscriber(sub.queue, sub.exchange, title=f"{sub.queue.name}:consume",
                              description=f"{sub.consumer} consumes `{sub.routing_key}`. {model.__doc__}")(consume)
    for type_, model in CATALOGUE.items():
        broker.publisher(
            exchange=RabbitExchange(model.EXCHANGE, type=ExchangeType.TOPIC, durable=True), routing_key=type_,
            title=f"{model.EXCHANGE}.{type_}:publish", schema=envelope(model),
            description=f"{producer[type_]} publishes `{type_}` (through its transactional outbox). {model.__doc__}",
        )
    spec = AsyncAPI(broker, title="microshop events", version="0.1.0", schema_version="3.0.0",
                    description="Every event of the shop: CloudEvents 1.0 envelopes on durable topic exchanges; "
                                "the routing key is the event type. Payloads: shopkit/contracts/events.py.")
    result: dict[str, Any] = spec.to_specification().to_jsonable()
    return result


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
