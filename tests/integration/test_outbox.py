"""The transactional outbox against SecantusDB and the real broker: order, marking, failure, purge, claims,
and the writer's relay publishing committed records from memory."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient, monitoring

from shopkit.contracts.events import StockLow
from shopkit.events import PRODUCT_EXCHANGE, STOCK_LOW, CloudEvent, new_event
from shopkit.messaging.bus import EventBus, create_broker
from shopkit.messaging.outbox import (
    NACKED_RETRY_SECONDS,
    OUTBOX,
    Claim,
    OutboxRelay,
    add_to_outbox,
    ensure_outbox_indexes,
)
from shopkit.messaging.publishing import PublishNacked, publishing_channel
from shopkit.metrics import OUTBOX_LOST_CLAIMS, OUTBOX_TAKEOVERS
from shopkit.mongo import in_transaction
from shopkit.settings import ServiceSettings
from shopkit.tasks import cancel
from tests.support.saga import eventually

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


async def test_records_stored_free_by_a_transaction_the_relay_cannot_see_go_out_on_notify(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    relay = OutboxRelay(db, bus, poll_seconds=3600)  # no poll after its first round but the one notify() asks for
    other = OutboxRelay(client[f"outbox_{uuid.uuid4().hex[:8]}"], bus, poll_seconds=3600)
    relay.start()
    other.start()
    try:
        await asyncio.sleep(0.2)  # their first rounds found nothing
        events = _stock_low(2)
        async with client.start_session() as session:  # not ``in_transaction``: the outbox cannot see it commit
            await session.with_transaction(lambda s: add_to_outbox(db, events, s))
        stored = await db[OUTBOX].find().to_list(None)
        assert [d.get("claim") for d in stored] == [None, None]  # stored free, for a poll
        assert relay.stores_free and not other.stores_free  # only the relay of that database polls on notify
        relay.notify()
        assert await _take(tap, 2, timeout=30) == [e.id for e in events]
    finally:
        await relay.stop()
        await other.stop()


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


# ---------------------------------------------------------------- publishing from memory (the writer's relay)


class OutboxCommands(monitoring.CommandListener):
    """The commands a client sends about the outbox collection, by name (insert, find, update, delete...)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == OUTBOX:
            self.seen.append((event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]


@pytest.fixture
async def listened(mongo_url: str, setup: tuple[Any, Any, EventBus, Any]
                   ) -> AsyncIterator[tuple[Any, Any, OutboxCommands]]:
    """A second client on the test's database whose outbox commands are recorded (the test reads through the first)."""
    commands = OutboxCommands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, event_listeners=[commands])
    try:
        yield client, client[setup[1].name], commands
    finally:
        await client.close()


async def _commit(client: Any, db: Any, events: list[CloudEvent]) -> None:
    async def write(session: Any) -> None:
        await add_to_outbox(db, events, session)

    await in_transaction(client, write)


async def _until_empty(db: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while await db[OUTBOX].count_documents({}):
            await asyncio.sleep(0.05)


async def test_a_writer_publishes_its_committed_records_from_memory_without_a_claim_or_a_read(
        setup: tuple[Any, Any, EventBus, Any], listened: tuple[Any, Any, OutboxCommands]) -> None:
    _, db, bus, tap = setup
    client, writer_db, commands = listened
    relay = OutboxRelay(writer_db, bus, poll_seconds=3600)  # no poll after the first round: memory only
    relay.start()
    try:
        await asyncio.sleep(0.3)  # its first round polled (and found nothing)
        assert commands.names() == ["find"]
        commands.seen.clear()
        events = _stock_low(5)
        await _commit(client, writer_db, events)
        assert await _take(tap, 5) == [e.id for e in events]  # one transaction's records, in their order
        stored = await db[OUTBOX].find().to_list(None)  # published, not deleted yet: claimed by the writer's relay
        assert {d["claim"] for d in stored} == {relay.writer_token}
        await _until_empty(db)
        # The insert (in the transaction) and one delete: no claim (update), no read (find) of the outbox.
        assert commands.names() == ["insert", "delete"]
    finally:
        await relay.stop()  # (its last round polls once more)
    assert relay.published == 5


async def test_deletes_of_several_rounds_are_coalesced_into_one_statement(
        setup: tuple[Any, Any, EventBus, Any], listened: tuple[Any, Any, OutboxCommands]) -> None:
    _, db, bus, tap = setup
    client, writer_db, commands = listened
    # A settle long enough that four commits fit in it on a loaded CI machine (a lease 4x as long).
    relay = OutboxRelay(writer_db, bus, poll_seconds=3600, lease_seconds=32.0, settle_seconds=8.0)
    relay.start()
    try:
        await asyncio.sleep(0.3)
        commands.seen.clear()
        events = _stock_low(4)
        started = asyncio.get_running_loop().time()
        for event in events:  # four transactions, one after the other: each its own round
            await _commit(client, writer_db, [event])
            await _take(tap, 1)
        # The tap may see the fourth before its confirm reaches the relay.
        await eventually(lambda: relay.published == 4, timeout=5, what="four confirmed")
        assert await db[OUTBOX].count_documents({}) == 4  # confirmed, their delete deferred
        await _until_empty(db)
        waited = asyncio.get_running_loop().time() - started
        assert commands.names() == ["insert"] * 4 + ["delete"]  # one delete for the four rounds
        assert sorted(commands.seen[-1][1]["deletes"][0]["q"]["_id"]["$in"]) == sorted(e.id for e in events)
    finally:
        await relay.stop()
    assert 7.9 <= waited < 20  # bounded: settle_seconds after the first was published


async def test_records_of_successive_transactions_go_out_in_commit_order(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    relay = OutboxRelay(db, bus, poll_seconds=3600)
    relay.start()
    try:
        events = _stock_low(12)
        for i in range(0, 12, 3):  # committed back to back: later ones are handed over while a round runs
            await _commit(client, db, events[i:i + 3])
        assert await _take(tap, 12) == [e.id for e in events]
    finally:
        await relay.stop()


async def test_an_aborted_transactions_records_are_neither_stored_nor_published(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    relay = OutboxRelay(db, bus, poll_seconds=3600)
    relay.start()

    async def write_then_fail(session: Any) -> None:
        await add_to_outbox(db, _stock_low(2), session)
        raise ValueError("the change is refused after its events were queued")

    try:
        with pytest.raises(ValueError, match="refused"):
            await in_transaction(client, write_then_fail)
        await _commit(client, db, kept := _stock_low(1))
        assert await _take(tap, 1) == [kept[0].id]
        await asyncio.sleep(0.2)
    finally:
        await relay.stop()
    assert await _everything(tap) == []
    assert relay.published == 1


async def test_a_record_whose_publish_from_memory_failed_is_published_by_a_poll(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    poller = OutboxRelay(db, bus, poll_seconds=0.2)
    poller.start()
    down = EventBus(bus.settings, create_broker(bus.settings))  # never connected: publishing fails
    writer = OutboxRelay(db, down, poll_seconds=3600)
    writer.start()  # started last: the relay of what this process writes
    takeovers = OUTBOX_TAKEOVERS._value.get()
    try:
        events = _stock_low(3)
        await _commit(client, db, events)
        assert await _take(tap, 3, timeout=30) == [e.id for e in events]  # released, then polled in order
        await _until_empty(db)
    finally:
        await writer.stop()
        await poller.stop()
    assert (writer.published, poller.published) == (0, 3)
    assert OUTBOX_TAKEOVERS._value.get() == takeovers  # released at once: nothing waited for a lease


async def test_a_dying_writers_records_are_taken_over_after_its_lease(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    dying = OutboxRelay(db, bus, poll_seconds=3600, lease_seconds=1)
    dying.start()
    await asyncio.sleep(0.2)
    await cancel(dying._task)  # the process dies: whatever its writers commit now stays claimed by it
    events = _stock_low(4)
    takeovers, lost = OUTBOX_TAKEOVERS._value.get(), OUTBOX_LOST_CLAIMS._value.get()
    loop = asyncio.get_running_loop()
    committed_at = loop.time()
    await _commit(client, db, events)
    stored = await db[OUTBOX].find().sort("seq").to_list(None)
    assert [(d["_id"], d["claim"]) for d in stored] == [(e.id, dying.writer_token) for e in events]
    survivor = OutboxRelay(db, bus, poll_seconds=0.2)
    survivor.start()
    try:
        assert await _take(tap, 4, timeout=30) == [e.id for e in events]  # in order, once
        assert loop.time() - committed_at >= 0.9  # not before the dead writer's lease ran out
        await _until_empty(db)
    finally:
        await survivor.stop()
        await dying.stop()
    assert survivor.published == 4
    assert OUTBOX_TAKEOVERS._value.get() - takeovers == 4
    assert OUTBOX_LOST_CLAIMS._value.get() == lost
    assert await _everything(tap) == []


async def test_committed_records_whose_lease_ran_out_in_memory_are_left_to_a_takeover(
        setup: tuple[Any, Any, EventBus, Any]) -> None:
    client, db, bus, tap = setup
    skew = timedelta(0)
    stalled = OutboxRelay(db, bus, poll_seconds=3600, clock=lambda: datetime.now(UTC) + skew)
    stalled.start()
    await asyncio.sleep(0.2)
    await cancel(stalled._task)  # its loop stalls: what its writers commit waits in memory
    events = _stock_low(5)
    for i in range(0, 5, 2):
        await _commit(client, db, events[i:i + 2])
    skew = timedelta(seconds=11)  # past the (10 s) lease by its own clock
    assert await stalled.publish_committed() == 0  # too late: none published, and none kept in memory
    assert not stalled._committed
    assert await _everything(tap) == []
    takeovers = OUTBOX_TAKEOVERS._value.get()
    survivor = OutboxRelay(db, bus, clock=lambda: datetime.now(UTC) + timedelta(seconds=11))
    assert await survivor.drain_once() == 5
    assert await _take(tap, 5) == [e.id for e in events]
    assert OUTBOX_TAKEOVERS._value.get() - takeovers == 5
    await stalled.stop()


@contextlib.asynccontextmanager
async def _refusing_queue(namespace: str) -> AsyncIterator[Any]:
    """A queue bound for StockLow that refuses every message (``x-max-length`` 0, ``reject-publish``): while it
    exists RabbitMQ nacks every such publish. Yields it; ``await queue.delete()`` ends the nacks."""
    connection = await aio_pika.connect(RABBIT)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, arguments={"x-max-length": 0,
                                                                       "x-overflow": "reject-publish"})
        await queue.bind(namespace + PRODUCT_EXCHANGE, routing_key=STOCK_LOW)
        yield queue


async def test_a_nacked_publish_retires_its_channel_and_the_next_goes_out_on_a_new_one(
        setup: tuple[Any, Any, EventBus, Any], namespace: str) -> None:
    """RabbitMQ 3.10 can nack every publish of one channel to a failed-over quorum queue while a new channel's
    are confirmed (shopkit.messaging.publishing; tests/cluster): a nack makes the bus publish on a new channel."""
    _, _, bus, tap = setup
    publishing = publishing_channel(bus.broker)
    assert publishing is not None
    first, nacked, after = _stock_low(3)
    await bus.publish(first)
    lane = await publishing.current()
    assert publishing.opened == 1
    async with _refusing_queue(namespace) as refusing:
        with pytest.raises(PublishNacked):
            await bus.publish(nacked)
        assert lane.retired
        await refusing.delete()
    await bus.publish(after)  # confirmed, on a new channel
    assert publishing.opened == 2
    assert (await publishing.current()).channel is not lane.channel
    await eventually(lambda: lane.channel.is_closed, timeout=5, what="the retired channel closed")
    assert (await _everything(tap))[-1] == after.id


async def test_a_relay_retries_a_nacked_round_within_a_second(
        setup: tuple[Any, Any, EventBus, Any], namespace: str) -> None:
    """Another failure backs off (here 5 s, doubling up to 10 s); a nacked round is retried after at most
    NACKED_RETRY_SECONDS, on a new channel, so events flow again within a second or so once RabbitMQ takes them."""
    client, db, bus, tap = setup
    publishing = publishing_channel(bus.broker)
    assert publishing is not None
    relay = OutboxRelay(db, bus, poll_seconds=5.0)
    relay.start()
    try:
        lane = await publishing.current()
        event = _stock_low(1)[0]
        async with _refusing_queue(namespace) as refusing:
            await _commit(client, db, [event])
            await eventually(lambda: lane.retired, timeout=5, what="a nacked publish")
            await refusing.delete()
        await _until_empty(db, timeout=NACKED_RETRY_SECONDS + 1.5)  # a 5 s backoff would not make it
        assert event.id in await _everything(tap)
        assert publishing.opened >= 2
    finally:
        await relay.stop()


async def test_a_stopping_relay_whose_last_round_hangs_hands_its_records_back_at_once(
        setup: tuple[Any, Any, EventBus, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from shopkit.messaging import outbox

    client, db, bus, tap = setup
    monkeypatch.setattr(outbox, "STOP_SECONDS", 0.5)
    stuck = OutboxRelay(db, bus, poll_seconds=3600)
    never = asyncio.Event()

    async def hang(event: CloudEvent) -> None:
        await never.wait()  # the broker does not confirm: the last round cannot finish

    monkeypatch.setattr(stuck, "_publish", hang)
    stuck.start()
    await asyncio.sleep(0.2)
    events = _stock_low(3)
    await _commit(client, db, events)
    stored = await db[OUTBOX].find().to_list(None)
    assert {d["claim"] for d in stored} == {stuck.writer_token}
    await stuck.stop()
    # Handed back: free now, not after the 10 s lease; another relay publishes them without a takeover.
    assert [d.get("claim") for d in await db[OUTBOX].find().to_list(None)] == [None, None, None]
    takeovers = OUTBOX_TAKEOVERS._value.get()
    survivor = OutboxRelay(db, bus)
    assert await survivor.drain_once() == 3
    assert await _take(tap, 3) == [e.id for e in events]
    assert OUTBOX_TAKEOVERS._value.get() == takeovers
