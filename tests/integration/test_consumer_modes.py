"""``MICROSHOP_CONSUMERS``: how the processes of a service share its queues (docs/saga.md, "Replicas").

Against the real broker: with ``single-active`` one bus consumes a queue and another waits, taking over
when the first stops consuming; a queue created in the other mode is used in the mode it has, and the
log says how to migrate it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import aio_pika
import pytest

from shopkit.contracts.events import StockLow
from shopkit.events import new_event
from shopkit.messaging.bus import SINGLE_ACTIVE_CONSUMER, Delivery, EventBus, create_broker
from shopkit.settings import ServiceSettings
from tests.support.saga import AMQP_URL, eventually


def consuming_bus(namespace: str, consumers: str, seen: list[str]) -> EventBus:
    settings = ServiceSettings(service_name="alerts", namespace=namespace, consumers=consumers)
    bus = EventBus(settings, create_broker(settings), publishes=[StockLow])

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        seen.extend(d.id for d in batch)

    bus.subscribe(StockLow, handle)
    return bus


async def publish(bus: EventBus, n: int) -> set[str]:
    events = [new_event(StockLow(product_id=f"p{i}", stock=1), "/tests") for i in range(n)]
    for event in events:
        await bus.publish(event)
    return {e.id for e in events}


async def test_single_active_one_bus_consumes_and_the_other_takes_over_when_it_stops(namespace: str) -> None:
    ns = f"{namespace}sac{uuid.uuid4().hex[:6]}."
    first: list[str] = []
    second: list[str] = []
    active, standby = consuming_bus(ns, "single-active", first), consuming_bus(ns, "single-active", second)
    await active.start()
    await standby.start()
    try:
        ids = await publish(active, 20)

        async def first_has_all() -> bool:
            return set(first) == ids

        await eventually(first_has_all, timeout=15, what="the active consumer handled every event")
        assert second == [], "the standby consumed while the active consumer was there"
        await active.stop()  # as on SIGTERM: cancel the consumers, finish what is in hand
        later = await publish(standby, 20)

        async def second_has_them() -> bool:
            return set(second) == later

        await eventually(second_has_them, timeout=15, what="the standby took the queue over")
        assert set(first) == ids  # the stopped one took nothing more
    finally:
        await active.stop()
        await standby.stop()


async def test_a_queue_created_shared_is_used_shared_and_the_log_says_how_to_migrate(
        namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    ns = f"{namespace}mig{uuid.uuid4().hex[:6]}."
    old: list[str] = []
    older = consuming_bus(ns, "shared", old)
    await older.connect()  # creates the queue without a single active consumer
    await older.stop()
    seen: list[str] = []
    bus = consuming_bus(ns, "single-active", seen)
    with caplog.at_level(logging.ERROR, logger="shopkit.broker"):
        await bus.start()
    try:
        assert any("was created with shared consumers" in r.getMessage() for r in caplog.records)
        (sub,) = bus.subscriptions
        assert sub.queue.arguments is not None and SINGLE_ACTIVE_CONSUMER not in sub.queue.arguments
        ids = await publish(bus, 5)

        async def handled() -> bool:
            return set(seen) == ids

        await eventually(handled, timeout=15, what="the events handled on the old queue")
    finally:
        await bus.stop()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:  # the queue is unchanged: its own arguments match, with the argument it is refused
        channel = await connection.channel()
        arguments = dict(sub.queue.arguments)
        await channel.declare_queue(sub.queue.name, durable=True, arguments=arguments)
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(sub.queue.name, durable=True,
                                        arguments={**arguments, SINGLE_ACTIVE_CONSUMER: True})
