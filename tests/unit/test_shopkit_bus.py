"""The kit's EventBus under FastStream's TestRabbitBroker: typed payloads, batches, correlation, failures."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from faststream.rabbit import TestRabbitBroker

from shopkit.context import current_correlation_id
from shopkit.contracts.events import OrderCreated, StockLow
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import Delivery, EventBus, create_broker
from shopkit.settings import ServiceSettings


def _bus(**settings_values: Any) -> EventBus:
    settings = ServiceSettings(service_name="unit", namespace="unit.", **settings_values)
    return EventBus(settings, create_broker(settings), retry_backoff_seconds=0)


def low(product: str, correlation_id: str | None = None) -> CloudEvent:
    return new_event(StockLow(product_id=product, stock=1), "test", correlation_id=correlation_id)


async def test_handler_gets_typed_payloads_and_each_delivery_its_correlation_id() -> None:
    bus = _bus()
    seen: list[Delivery[StockLow]] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        seen.extend(batch)
        assert current_correlation_id() is None  # a batch serves many callers: no one's context leaks in

    bus.subscribe(StockLow, handle)
    event = low("p1", "corr-1")
    async with TestRabbitBroker(bus.broker):
        await bus.publish(event)
    assert [(d.id, d.data, d.correlation_id) for d in seen] == [(event.id, StockLow(product_id="p1", stock=1),
                                                                  "corr-1")]
    assert current_correlation_id() is None


async def test_a_delivery_is_handled_on_the_event_loop_without_a_worker_thread() -> None:
    # FastStream resolves a handler's context parameters (``message: RabbitMessage``) in a worker thread per
    # delivery; the kit's consumer takes the message from the context instead, so no thread is ever started.
    bus = _bus()
    seen: list[Delivery[StockLow]] = []
    threads: set[str] = set()
    before = {t.ident for t in threading.enumerate()}  # (an earlier test's idle pool thread is not this one's)

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        seen.extend(batch)
        threads.update(t.name for t in threading.enumerate() if t.ident not in before)

    bus.subscribe(StockLow, handle)
    async with TestRabbitBroker(bus.broker):
        for i in range(5):
            await bus.publish(low(f"p{i}"))
    assert len(seen) == 5
    assert not [name for name in threads if "AnyIO" in name], threads


async def test_concurrent_deliveries_share_a_batch() -> None:
    bus = _bus()
    batches: list[list[str]] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        batches.append([d.data.product_id for d in batch])
        await asyncio.sleep(0.01)  # a commit takes a while; meanwhile the next batch fills

    sub = bus.subscribe(StockLow, handle, max_batch=8, linger=0.05)
    async with TestRabbitBroker(bus.broker):
        await asyncio.gather(*(bus.publish(low(f"p{i}")) for i in range(20)))
    assert sorted(p for b in batches for p in b) == sorted(f"p{i}" for i in range(20))
    assert max(len(b) for b in batches) > 1 and all(len(b) <= 8 for b in batches)
    assert sub.batcher is not None and sub.batcher.stats.items == 20


async def test_a_failing_batch_is_retried_one_by_one_so_only_the_poison_event_fails() -> None:
    bus = _bus()
    committed: list[str] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        if any(d.data.product_id == "poison" for d in batch):
            raise RuntimeError("poison")
        committed.extend(d.data.product_id for d in batch)

    bus.subscribe(StockLow, handle, linger=0.05)
    async with TestRabbitBroker(bus.broker):
        results = await asyncio.gather(*(bus.publish(low(p)) for p in ("a", "poison", "b")),
                                       return_exceptions=True)
    assert sorted(committed) == ["a", "b"]
    assert [type(r).__name__ for r in results] == ["NoneType", "RuntimeError", "NoneType"]


async def test_a_failing_handler_propagates_so_the_message_is_nacked() -> None:
    bus = _bus()

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        raise RuntimeError("database away")

    bus.subscribe(StockLow, handle)
    async with TestRabbitBroker(bus.broker):
        with pytest.raises(RuntimeError, match="database away"):
            await bus.publish(low("p1"))


async def test_a_malformed_payload_never_reaches_the_handler() -> None:
    bus = _bus()
    seen: list[object] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        seen.extend(batch)

    bus.subscribe(StockLow, handle)
    bad = CloudEvent(source="test", type="stock_low", data={"product_id": "p1", "stock": -5})
    async with TestRabbitBroker(bus.broker):
        await bus.publish(bad)  # rejected (dead-lettered by RabbitMQ), not retried
    assert seen == []


def test_each_consumer_has_its_own_quorum_queue_with_a_dead_letter_route() -> None:
    bus = _bus()

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        return None

    sub = bus.subscribe(StockLow, handle, consumer="alerts")
    assert sub.queue.name == "unit.alerts.stock_low"
    assert sub.queue.arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "unit.product_exchange.dlx",
        "x-dead-letter-routing-key": "unit.alerts.stock_low",
        "x-delivery-limit": 5,
        "x-single-active-consumer": True,
    }
    assert sub.dlq.name == "unit.alerts.stock_low.dlq"
    assert sub.exchange.name == "unit.product_exchange"


def test_shared_consumers_declare_queues_without_a_single_active_consumer() -> None:
    bus = _bus(consumers="shared")

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        return None

    sub = bus.subscribe(StockLow, handle, consumer="alerts")
    assert sub.queue.arguments is not None
    assert "x-single-active-consumer" not in sub.queue.arguments
    assert bus.broker.subscribers[0].queue is sub.queue  # settle_consumer_modes switches it in place


def test_transient_failures_are_told_from_deterministic_ones() -> None:
    from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, ServerSelectionTimeoutError

    from shopkit.messaging.bus import TransientFailure, is_transient

    labelled = OperationFailure("aborted", code=251, details={"errorLabels": ["TransientTransactionError"]})
    for exc in (AutoReconnect("x"), NetworkTimeout("x"), ServerSelectionTimeoutError("x"), TimeoutError(),
                OperationFailure("WriteConflict", code=112), labelled, TransientFailure("lost a race")):
        assert is_transient(exc), exc
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = AutoReconnect("inner")
    assert is_transient(wrapped)
    for exc in (RuntimeError("bug"), ValueError("bad data"), KeyError("k"), OperationFailure("bad", code=2)):
        assert not is_transient(exc), exc


async def test_a_service_bus_publishes_only_what_it_declares_and_declares_only_what_it_uses() -> None:
    settings = ServiceSettings(service_name="unit", namespace="unit.")
    bus = EventBus(settings, create_broker(settings), publishes=(OrderCreated,))

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        return None

    bus.subscribe(StockLow, handle)
    assert bus.used_exchanges() == ["order_exchange", "product_exchange"], "not alert_exchange"
    async with TestRabbitBroker(bus.broker):
        with pytest.raises(ValueError, match="does not declare that it publishes 'stock_low'"):
            await bus.publish(low("p1"))
    granted = bus.permissions()
    assert re.fullmatch(granted.write, "unit.order_exchange")
    assert not re.fullmatch(granted.write, "unit.product_exchange"), "it consumes stock_low, it does not publish it"
    assert not re.fullmatch(granted.write, "amq.default") and not re.fullmatch(granted.write, "")
    for name in ("unit.unit.stock_low", "unit.unit.stock_low.dlq", "unit.unit.replay", "unit.product_exchange.dlx",
                 "unit.unroutable", "unit.product_exchange.unroutable"):
        assert re.fullmatch(granted.configure, name), name
    assert not re.fullmatch(granted.configure, "unit.other.stock_low"), "another service's queue"
    assert not re.fullmatch(granted.read, "other.unit.stock_low"), "another namespace"
