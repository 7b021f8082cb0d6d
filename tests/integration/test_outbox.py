"""The transactional outbox against SecantusDB and the real broker: order, marking, failure, purge, claims."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from shopkit.contracts.events import StockLow
from shopkit.events import PRODUCT_EXCHANGE, STOCK_LOW, CloudEvent, new_event
from shopkit.messaging.bus import EventBus, create_broker
from shopkit.messaging.outbox import OUTBOX, Claim, OutboxRelay, add_to_outbox, ensure_outbox_indexes
from shopkit.metrics import OUTBOX_LOST_CLAIMS, OUTBOX_TAKEOVERS
from shopkit.mongo import in_transaction
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
    relay = OutboxRelay(db, bus)
    assert await relay.pending() == 1
    assert await relay.drain_once() == 1  # released by the failed relay: free at once, not after its lease


async def test_sent_records_are_purged_after_retention(setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    await add_to_outbox(db, [new_event(StockLow(product_id="p", stock=0), "test") for _ in range(3)], None)
    relay = OutboxRelay(db, bus, retention_seconds=0)
    relay._purged_at = datetime.now(UTC) - timedelta(minutes=5)
    await relay.drain_once()  # publishes, marks sent, then purges what was sent before now
    await _take(tap, 3)
    assert await db[OUTBOX].count_documents({}) == 0


def _stock_low(n: int) -> list[CloudEvent]:
    return [new_event(StockLow(product_id=f"p{i}", stock=i), "test") for i in range(n)]


async def _everything(tap: Any) -> list[str]:
    """Every message on the tap queue now (publisher confirms: a confirmed publish is already queued)."""
    ids: list[str] = []
    while (message := await tap.get(no_ack=True, fail=False)) is not None:
        ids.append(message.message_id)
    return ids


async def test_two_relays_publish_each_record_exactly_once(setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    events = _stock_low(120)

    async def write(session: Any) -> None:
        await add_to_outbox(db, events[:60], session)

    await in_transaction(client, write)
    await add_to_outbox(db, events[60:], None)
    lost_before = OUTBOX_LOST_CLAIMS._value.get()
    relays = [OutboxRelay(db, bus, batch=8, poll_seconds=0.2) for _ in range(2)]
    for relay in relays:
        relay.start()
    try:
        async with asyncio.timeout(60):
            while await db[OUTBOX].count_documents({}):
                await asyncio.sleep(0.05)
    finally:
        for relay in relays:
            await relay.stop()
    published = await _everything(tap)
    assert sorted(published) == sorted(e.id for e in events)  # every one, none twice
    assert [r.published > 0 for r in relays] == [True, True]  # both took part
    assert sum(r.published for r in relays) == 120
    assert OUTBOX_LOST_CLAIMS._value.get() == lost_before


async def test_relays_racing_for_the_same_batch_split_it_without_a_duplicate(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    events = _stock_low(40)
    await add_to_outbox(db, events, None)
    first, second = OutboxRelay(db, bus, batch=5), OutboxRelay(db, bus, batch=5)
    async with asyncio.timeout(60):
        while await first.pending():
            # Both read the same oldest free records, then both try to claim them: one write wins each.
            await asyncio.gather(first.drain_once(), second.drain_once())
    assert sorted(await _everything(tap)) == sorted(e.id for e in events)
    assert first.published + second.published == 40


async def _claimed_by_a_dead_relay(db: Any, bus: EventBus, n: int, lease_seconds: float
                                   ) -> tuple[list[CloudEvent], OutboxRelay, Claim]:
    """``n`` records, claimed by a relay that then never publishes them (it "died")."""
    events = _stock_low(n)
    await add_to_outbox(db, events, None)
    dead = OutboxRelay(db, bus, lease_seconds=lease_seconds)
    claim = await dead.claim()
    assert [d["_id"] for d in claim.docs] == [e.id for e in events]
    return events, dead, claim


async def test_a_relay_that_claims_and_dies_is_taken_over_after_its_lease(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    events, dead, claim = await _claimed_by_a_dead_relay(db, bus, 10, lease_seconds=60)
    skew = timedelta(0)
    survivor = OutboxRelay(db, bus, clock=lambda: datetime.now(UTC) + skew)
    assert await survivor.drain_once() == 0  # held by the dead relay's lease
    takeovers, lost = OUTBOX_TAKEOVERS._value.get(), OUTBOX_LOST_CLAIMS._value.get()
    skew = timedelta(seconds=61)  # the survivor's clock passes the lease
    assert await survivor.drain_once() == 10
    assert await _take(tap, 10) == [e.id for e in events]  # in order, once
    assert OUTBOX_TAKEOVERS._value.get() - takeovers == 10
    assert await db[OUTBOX].count_documents({}) == 0
    # The "dead" relay was only stalled, and by its own clock its lease still holds: it publishes the
    # records a second time, and counts each copy.
    assert await dead.publish(claim) == 10
    assert sorted(await _everything(tap)) == sorted(e.id for e in events)
    assert OUTBOX_LOST_CLAIMS._value.get() - lost == 10


async def test_a_dead_relays_claim_expires_and_a_running_relay_publishes_its_records(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    events, dead, claim = await _claimed_by_a_dead_relay(db, bus, 6, lease_seconds=1)
    survivor = OutboxRelay(db, bus, poll_seconds=0.2)
    survivor.start()
    try:
        assert sorted(await _take(tap, 6, timeout=30)) == sorted(e.id for e in events)
    finally:
        await survivor.stop()
    # Its lease has run out by its own clock too: it does not publish what it no longer holds.
    assert await dead.publish(claim) == 0
    assert await _everything(tap) == []


async def test_a_woken_idle_relay_publishes_at_once(setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    relay = OutboxRelay(db, bus, poll_seconds=3600)  # only the notification can make it publish
    relay.start()
    try:
        await asyncio.sleep(0.2)  # its first round found nothing; it is waiting now
        events = _stock_low(3)
        await add_to_outbox(db, events, None)
        relay.notify()
        assert await _take(tap, 3, timeout=30) == [e.id for e in events]
    finally:
        await relay.stop()


async def test_a_stopping_relay_publishes_what_is_pending_in_a_last_round(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    _, db, bus, tap = setup
    relay = OutboxRelay(db, bus, poll_seconds=3600)  # no poll would find these records before the stop
    relay.start()
    await asyncio.sleep(0.2)  # its first round found nothing; it is waiting now
    events = _stock_low(3)
    await add_to_outbox(db, events, None)  # committed, but nobody notified the relay
    await relay.stop()
    assert relay.published == 3
    assert await db[OUTBOX].count_documents({}) == 0
    assert await _take(tap, 3) == [e.id for e in events]
