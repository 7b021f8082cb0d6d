"""Events no queue is bound for are kept in the ``<namespace>unroutable`` queue and counted, not dropped."""

from __future__ import annotations

import json
import logging
import uuid

import aio_pika
import pytest

from shopkit.contracts.events import StockLow
from shopkit.events import new_event
from shopkit.messaging.bus import EventBus, create_broker
from shopkit.messaging.deadletters import DeadLetters
from shopkit.settings import ServiceSettings
from tests.support.saga import AMQP_URL, eventually


def bus_in(namespace: str) -> EventBus:
    settings = ServiceSettings(service_name="publisher", namespace=namespace)
    return EventBus(settings, create_broker(settings))


async def test_an_event_no_queue_is_bound_for_lands_in_the_unroutable_queue_and_is_counted(namespace: str) -> None:
    ns = f"{namespace}u{uuid.uuid4().hex[:6]}."
    bus = bus_in(ns)
    letters = DeadLetters(AMQP_URL, ns)
    await bus.connect()
    try:
        assert await letters.unroutable() == 0
        event = new_event(StockLow(product_id="p1", stock=1), "/tests")  # nobody in ``ns`` consumes stock_low
        await bus.publish(event)

        async def counted() -> bool:
            return await letters.unroutable() == 1

        await eventually(counted, timeout=10, what="the unroutable event counted")
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"{ns}unroutable", passive=True)
            message = await queue.get(no_ack=True, timeout=5)
            assert message is not None and message.message_id == event.id
            assert json.loads(message.body)["type"] == "stock_low"
            assert message.routing_key == "stock_low"
    finally:
        await bus.stop()
        await bus.broker.stop()
        await letters.close()


async def test_an_exchange_declared_before_it_had_an_alternate_still_works_and_the_log_says_how_to_migrate(
        namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    ns = f"{namespace}o{uuid.uuid4().hex[:6]}."
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(f"{ns}product_exchange", aio_pika.ExchangeType.TOPIC, durable=True)
    bus = bus_in(ns)
    with caplog.at_level(logging.ERROR, logger="shopkit.broker"):
        await bus.connect()
    try:
        assert any("without the alternate exchange" in r.getMessage() for r in caplog.records)
        await bus.publish(new_event(StockLow(product_id="p1", stock=1), "/tests"))  # publishing still works
    finally:
        await bus.stop()
        await bus.broker.stop()
