"""The kit's EventBus wrapper under FastStream's TestRabbitBroker: typed envelopes, correlation, failures."""

from __future__ import annotations

import pytest
from faststream.rabbit import TestRabbitBroker

from shopkit.broker import EventBus, create_broker
from shopkit.context import current_correlation_id
from shopkit.events import ORDER_CREATED, CloudEvent, new_event
from shopkit.settings import ServiceSettings


def _bus() -> EventBus:
    settings = ServiceSettings(service_name="unit", namespace="unit.")
    bus = EventBus(settings, create_broker(settings), retry_backoff_seconds=0)
    return bus


async def test_handler_gets_the_envelope_with_its_correlation_id_in_context() -> None:
    bus = _bus()
    seen: list[tuple[CloudEvent, str | None]] = []

    async def handle(event: CloudEvent) -> None:
        seen.append((event, current_correlation_id()))

    bus.subscribe(ORDER_CREATED, handle)
    event = new_event(ORDER_CREATED, "test", {"order_id": "o1"}, correlation_id="corr-1")
    async with TestRabbitBroker(bus.broker):
        await bus.publish(event)
    assert [(e.id, e.data, cid) for e, cid in seen] == [(event.id, {"order_id": "o1"}, "corr-1")]
    assert current_correlation_id() is None  # reset after the handler


async def test_a_failing_handler_propagates_so_the_message_is_nacked() -> None:
    bus = _bus()

    async def handle(event: CloudEvent) -> None:
        raise RuntimeError("database away")

    bus.subscribe(ORDER_CREATED, handle)
    async with TestRabbitBroker(bus.broker):
        with pytest.raises(RuntimeError, match="database away"):
            await bus.publish(new_event(ORDER_CREATED, "test", {}))


def test_each_consumer_has_its_own_quorum_queue_with_a_dead_letter_route() -> None:
    bus = _bus()

    async def handle(event: CloudEvent) -> None:
        return None

    sub = bus.subscribe(ORDER_CREATED, handle, consumer="products")
    assert sub.queue.name == "unit.products.order_created"
    assert sub.queue.arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "unit.order_exchange.dlx",
        "x-dead-letter-routing-key": "unit.products.order_created",
        "x-delivery-limit": 5,
    }
    assert sub.dlq.name == "unit.products.order_created.dlq"
    assert sub.exchange.name == "unit.order_exchange"
