"""The shop's AsyncAPI document, generated with FastStream's own tooling from the event catalogue.

``python -m devtools.asyncapi`` prints it (``make asyncapi`` writes ``docs/asyncapi.json``; a test
checks the file is current). Channels are the queues the services really declare (their apps
are built, not started, and their subscriptions read), each with the CloudEvents envelope of its
catalogue model as the payload; the producer's side of every event is a publish operation on
its exchange.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange
from faststream.specification import AsyncAPI
from pydantic import BaseModel, create_model

from shopctl.apps import CONSUMERS, service_bus
from shopkit.contracts.events import CATALOGUE, EventData
from shopkit.events import CloudEvent


@cache
def envelope(model: type[EventData]) -> type[BaseModel]:
    """The CloudEvents envelope whose ``data`` is ``model``: what a message of that type looks like on the wire."""
    return create_model(  # type: ignore[no-any-return,call-overload]
        f"{model.__name__}Event", __base__=CloudEvent, __doc__=model.__doc__, data=(model, ...))


def _doc(model: type[EventData]) -> str:
    return " ".join((model.__doc__ or "").split())


def _bound(bindings: tuple[str, ...]) -> str:
    """`` (bound to `a`, `b`)`` where a queue is bound to other keys than its event type."""
    return f" (bound to {', '.join(f'`{key}`' for key in bindings)})" if any("." in key for key in bindings) else ""


def _routing_key(model: type[EventData]) -> str:
    return model.TYPE if model.ROUTED_BY is None else f"{model.TYPE}.<{model.ROUTED_BY}>"


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

            consume.__name__ = sub.consumer_queue.replace(".", "_")
            broker.subscriber(sub.queue, sub.exchange, title=f"{sub.queue.name}:consume",
                              description=f"{sub.consumer} consumes `{sub.routing_key}`{_bound(sub.bindings)}. "
                                          f"{_doc(model)}")(consume)
    for type_, model in CATALOGUE.items():
        broker.publisher(
            exchange=RabbitExchange(model.EXCHANGE, type=ExchangeType.TOPIC, durable=True),
            routing_key=_routing_key(model),
            title=f"{model.EXCHANGE}.{type_}:publish", schema=envelope(model),
            description=f"{producer[type_]} publishes `{type_}` (through its transactional outbox). {_doc(model)}",
        )
    spec = AsyncAPI(broker, title="microshop events", version="0.1.0", schema_version="3.0.0",
                    description="Every event of the shop: CloudEvents 1.0 envelopes on durable topic exchanges; "
                                "the routing key is the event type, or `<type>.<field value>` for a type routed "
                                "by a payload field (`order_updated.<new_status>`). "
                                "Payloads: shopkit/contracts/events.py.")
    result: dict[str, Any] = spec.to_specification().to_jsonable()
    return result


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
