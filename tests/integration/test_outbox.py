"""The transactional outbox against SecantusDB and the real broker: order, marking, failure, purge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from shopkit.broker import EventBus, create_broker
from shopkit.contracts.events import StockLow
from shopkit.events import PRODUCT_EXCHANGE, STOCK_LOW, new_event
from shopkit.mongo import in_transaction
from shopkit.outbox import OUTBOX, OutboxRelay, add_to_outbox, ensure_outbox_indexes
from shopkit.settings import ServiceSettings

RABBIT = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def setup(mongo_url: str, namespace: str) -> AsyncIterator[tuple[Any, Any, EventBus, Any]]:
    settings = ServiceSettings(service_name="outboxtest", namespace=namespace)
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url)
    db = client[f"outbox_{uuid.uuid4().hex[:8]}"]
    await ensure_outbox_indexes(db)
    bus = EventBus(settings, create_broker(settings))
    await bus.broker.connect()
    await bus.declare()
    connection = await aio_pika.connect(RABBIT)
    channel = await connection.channel()
    exchange = await channel.get_exchange(namespace + PRODUCT_EXCHANGE)
    tap = await channel.declare_queue(exclusive=True)
    await tap.bind(exchange, routing_key=STOCK_LOW)
    try:
        yield client, db, bus, tap
    finally:
        await connection.close()
        await bus.broker.stop()
        await client.close()


async def _take(tap: Any, n: int, timeout: float = 10.0) -> list[str]:
    ids: list[str] = []
    async with asyncio.timeout(timeout):
        async with tap.iterator() as it:
            async for message in it:
                async with message.process():
                    ids.append(message.message_id)
                if len(ids) == n:
                    break
    return ids


async def test_relay_publishes_in_commit_order_and_marks_sent(setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    events = [new_event(StockLow(product_id=f"p{i}", stock=i), "test") for i in range(5)]

    async def write(session: Any) -> None:
        await add_to_outbox(db, events[:3], session)

    await in_transaction(client, write)
    await add_to_outbox(db, events[3:], None)
    relay = OutboxRelay(db, bus)
    assert await relay.pending() == 5
    assert await relay.drain_once() == 5
    assert await _take(tap, 5) == [e.id for e in events]
    assert await relay.pending() == 0
    assert await relay.drain_once() == 0  # nothing is published twice


async def test_unpublishable_records_stay_pending(setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, _ = setup
    await add_to_outbox(db, [new_event(StockLow(product_id="p", stock=0), "test")], None)
    down = EventBus(bus.settings, create_broker(bus.settings))  # never connected: publishing fails
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the client raises, the record must stay
        await OutboxRelay(db, down).drain_once()
    assert await OutboxRelay(db, bus).pending() == 1


async def test_sent_records_are_purged_after_retention(setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    await add_to_outbox(db, [new_event(StockLow(product_id="p", stock=0), "test") for _ in range(3)], None)
    relay = OutboxRelay(db, bus, retention_seconds=0)
    relay._purged_at = datetime.now(UTC) - timedelta(minutes=5)
    await relay.drain_once()  # publishes, marks sent, then purges what was sent before now
    await _take(tap, 3)
    assert await db[OUTBOX].count_documents({}) == 0
