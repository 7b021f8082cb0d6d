"""Consumers against the real broker: transient failures never use up the delivery limit; dead letters are
visible and can be inspected, replayed and discarded (``shopkit.dlq``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from shopkit.broker import Delivery, EventBus, create_broker
from shopkit.contracts.events import StockLow
from shopkit.events import new_event
from shopkit.settings import ServiceSettings
from tests.support.saga import AMQP_URL, eventually


@pytest.fixture
async def bus(namespace: str) -> AsyncIterator[EventBus]:
    settings = ServiceSettings(service_name=f"dl{uuid.uuid4().hex[:6]}", namespace=namespace)
    bus = EventBus(settings, create_broker(settings), retry_backoff_seconds=0.01)
    yield bus
    await bus.stop()


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def test_more_transient_failures_than_the_delivery_limit_apply_the_event_once_and_dead_letter_nothing(
        bus: EventBus) -> None:
    failures = {"left": bus.max_deliveries + 3}
    applied: list[str] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            # Alternately a lost connection and an aborted transaction (write conflict under load).
            if failures["left"] % 2:
                raise AutoReconnect("connection reset by peer")
            raise OperationFailure("WriteConflict", code=112,
                                   details={"errorLabels": ["TransientTransactionError"]})
        applied.extend(d.id for d in batch)

    sub = bus.subscribe(StockLow, handle, linger=0)
    await bus.start()
    event = new_event(StockLow(product_id="p1", stock=1), "/tests")
    await bus.publish(event)
    await eventually(lambda: asyncio.sleep(0, applied), timeout=20, what="the event applied")
    await asyncio.sleep(0.3)  # a redelivery (there must be none) would show up by now
    assert applied == [event.id]
    assert failures["left"] == 0
    assert await queue_depth(sub.queue.name) == 0
    assert await queue_depth(sub.dlq.name) == 0
