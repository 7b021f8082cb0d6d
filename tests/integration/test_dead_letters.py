"""Consumers against the real broker: transient failures never use up the delivery limit; dead letters are
visible and can be inspected, replayed and discarded (``shopkit.messaging.deadletters``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import httpx
import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from devtools.shop import LocalShop
from shopkit.contracts.events import StockLow
from shopkit.events import new_event
from shopkit.messaging.bus import Delivery, EventBus, create_broker
from shopkit.messaging.deadletters import DeadLetters
from shopkit.settings import ServiceSettings
from tests.support.api import bearer
from tests.support.metrics import parse_samples, total
from tests.support.saga import AMQP_URL, cloud_event, dead_letter_for_alerts, eventually, publish_raw


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


async def test_a_dead_lettered_event_is_listed_inspected_and_replayed_to_success(bus: EventBus, namespace: str) -> None:
    fixed = {"yet": False}
    applied: list[str] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        if not fixed["yet"]:
            raise RuntimeError("a bug in the handler")  # deterministic: counts toward the delivery limit
        applied.extend(d.id for d in batch)

    sub = bus.subscribe(StockLow, handle, linger=0)
    queue = f"{sub.consumer}.{sub.routing_key}"
    await bus.start()
    event = new_event(StockLow(product_id="p1", stock=1), "/tests", correlation_id="corr-dl")
    await bus.publish(event)
    letters = DeadLetters(AMQP_URL, namespace)
    try:
        await eventually(lambda: _depth_is(letters, queue, 1), timeout=30, what="the event dead-lettered")
        [letter] = await letters.show(queue)
        assert (letter.message_id, letter.reason, letter.event_type) == (event.id, "delivery_limit", "stock_low")
        assert letter.correlation_id == "corr-dl" and letter.body["id"] == event.id
        assert await letters.depths([queue]) == {queue: 1}  # showing leaves it there
        assert applied == []

        fixed["yet"] = True
        assert await letters.replay(queue, [event.id]) == [event.id]
        await eventually(lambda: asyncio.sleep(0, applied), timeout=20, what="the replayed event applied")
        assert applied == [event.id]
        assert await letters.depths([queue]) == {queue: 0}
    finally:
        await letters.close()


async def _depth_is(letters: DeadLetters, queue: str, n: int) -> bool:
    return (await letters.depths([queue]))[queue] == n


async def test_a_malformed_event_is_dead_lettered_at_once_and_can_be_discarded(bus: EventBus, namespace: str) -> None:
    calls: list[int] = []

    async def handle(batch: Sequence[Delivery[StockLow]]) -> None:
        calls.append(len(batch))

    sub = bus.subscribe(StockLow, handle, linger=0)
    queue = f"{sub.consumer}.{sub.routing_key}"
    await bus.start()
    bad = cloud_event("stock_low", {"product_id": "p1", "stock": -5})
    await publish_raw(namespace, "product_exchange", "stock_low", json.dumps(bad).encode(), bad["id"])
    letters = DeadLetters(AMQP_URL, namespace)
    try:
        await eventually(lambda: _depth_is(letters, queue, 1), timeout=10, what="the malformed event dead-lettered")
        [letter] = await letters.show(queue)
        assert (letter.message_id, letter.reason, letter.deaths) == (bad["id"], "rejected", 1)  # no retries
        assert calls == []
        # The command line sees it too, then discards it.
        env = {**os.environ, "MICROSHOP_NAMESPACE": namespace, "MICROSHOP_RABBITMQ_URL": AMQP_URL}
        cli = [sys.executable, "-m", "shopctl.dlq"]
        shown = subprocess.run([*cli, "show", queue, "--compact"], env=env, capture_output=True, text=True,
                               timeout=60, check=True).stdout
        assert json.loads(shown.splitlines()[0])["message_id"] == bad["id"]
        out = subprocess.run([*cli, "discard", queue, "--id", bad["id"]], env=env, capture_output=True, text=True,
                             timeout=60, check=True).stdout
        assert "discarded 1 dead letter(s)" in out
        assert await letters.depths([queue]) == {queue: 0}
    finally:
        await letters.close()


async def test_dead_letters_through_the_gateway_admin_only_listed_shown_and_replayed(
        shop: LocalShop, api: httpx.AsyncClient, admin_token: str, customer: dict[str, str], namespace: str) -> None:
    event = await dead_letter_for_alerts(namespace, customer["id"])
    order_id = event.data["order_id"]

    async def waiting() -> float:  # what alerts' /metrics says (polled every second in the session shop)
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"{shop.url('alerts')}/metrics")).text
        return total(parse_samples(page), "microshop_dead_letters", queue="alerts.order_created")

    await eventually(waiting, timeout=20, what="microshop_dead_letters counting the waiting dead letter")
    base = "/alerts/admin/dead-letters"
    assert (await api.get(base, headers=bearer(customer["access_token"]))).status_code == 403
    r = await api.get(base, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert {"queue": "alerts.order_created", "dead_letters": 1} in r.json() or any(
        q["queue"] == "alerts.order_created" and q["dead_letters"] >= 1 for q in r.json())
    r = await api.get(f"{base}/alerts.order_created", headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert event.id in [d["message_id"] for d in r.json()]
    r = await api.get(f"{base}/nope.order_created", headers=bearer(admin_token))
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")

    r = await api.post(f"{base}/alerts.order_created/replay", json={"ids": [event.id]}, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert r.json() == {"queue": "alerts.order_created", "ids": [event.id]}

    async def alerted() -> bool:
        r = await api.get("/alerts", headers=bearer(customer["access_token"]))
        return r.status_code == 200 and order_id in r.text

    await eventually(alerted, timeout=20, what="the replayed order_created handled by alerts")
    letters = DeadLetters(AMQP_URL, namespace)
    try:
        depth = (await letters.depths(["alerts.order_created"]))["alerts.order_created"]
    finally:
        await letters.close()

    async def counted_again() -> bool:
        return await waiting() == depth

    await eventually(counted_again, timeout=20, what=f"microshop_dead_letters back to the DLQ's depth ({depth})")
