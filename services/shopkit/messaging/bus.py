"""The event bus of one service: its consumer queues, batched typed subscribers, and publishing.

Each consumer has a durable quorum queue per event type. The kit validates each delivery against its
catalogue model once (a malformed one is dead-lettered at once) and hands valid ones to the handler
in batches (``shopkit.batching``), one transaction per batch. Transient failures (``is_transient``)
are retried in-process without using up the delivery limit, so load or an outage never dead-letters a
valid event; other failures are nacked and, after ``max_deliveries``, dead-lettered to ``<queue>.dlq``.
Names and permissions come from ``shopkit.messaging.topology``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import aio_pika
from faststream import AckPolicy
from faststream._internal.endpoint.subscriber.utils import MultiLock
from faststream.exceptions import RejectMessage
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.schemas.queue import QueueType, QuorumQueueArgs
from faststream.rabbit.subscriber.usecase import RabbitSubscriber
from pydantic import ValidationError

from shopkit import tracing
from shopkit.batching import Batcher
from shopkit.context import correlation_id_var
from shopkit.contracts.events import EventData
from shopkit.events import EXCHANGE_OF, CloudEvent
from shopkit.messaging.publishing import PublishNacked, publishing_channel
from shopkit.messaging.topology import (
    UNROUTABLE_MAX_LENGTH,
    Permissions,
    Topology,
    consumer_queue,
    dead_letter_exchange,
    exchange,
    queue_name,
)
from shopkit.metrics import (
    BATCH_SIZE,
    EVENTS_DEAD_LETTERED,
    EVENTS_REDELIVERED,
    TRANSACTION_RETRIES,
    broker_metrics,
)
from shopkit.settings import ServiceSettings
from shopkit.transient import TransientFailure, is_transient

__all__ = ["Delivery", "EventBus", "PublishNacked", "TransientFailure", "create_broker", "is_transient"]

log = logging.getLogger("shopkit.broker")

P = TypeVar("P", bound=EventData)


@dataclass(frozen=True)
class Delivery(Generic[P]):
    """One event as a handler sees it: the envelope and its validated payload."""

    event: CloudEvent
    data: P
    consumer: str = ""
    """``<service>.<event type>``: who handles it (the queue's name without the namespace)."""
    traceparent: str | None = None
    """The W3C trace context of this delivery's consume span (tracing on): events it causes carry it."""

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def marker(self) -> str:
        """The handled-event id this consumer records for this event (``shopkit.mongo.apply_batch_once``)."""
        return f"{self.consumer}:{self.event.id}"

    @property
    def correlation_id(self) -> str:
        """What events caused by this one carry (handlers of a batch pass it explicitly to ``new_event``)."""
        return self.event.correlationid or self.event.id


BatchHandler = Callable[[Sequence[Delivery[P]]], Awaitable[object]]
"""Handles a batch of deliveries, in arrival order, in one commit (or raises for the whole batch)."""



SINGLE_ACTIVE_CONSUMER: Final = "x-single-active-consumer"
"""The queue argument of ``MICROSHOP_CONSUMERS=single-active`` (``ServiceSettings.consumers``)."""


CONSUMER_GRACE_SECONDS = 10.0
"""On shutdown, the longest the deliveries in hand get to finish (:meth:`EventBus.stop_consuming`)."""


def create_broker(settings: ServiceSettings, *, prefetch_count: int | None = None) -> RabbitBroker:
    """The service's broker. ``prefetch_count`` bounds the unacked messages (= concurrent handlers) per consumer.

    Without it RabbitMQ pushes a whole backlog at once and aio-pika starts one task per message. The
    default is two batches: a full batch committing plus the next one filling up.
    """
    # Telemetry outermost: the metrics middleware's work is then part of the consume span.
    middlewares: list[Any] = []
    if tracing.tracing_enabled():
        middlewares.append(tracing.broker_middleware())
    if settings.metrics_enabled:
        middlewares.append(broker_metrics(settings.service_name))
    # FastStream logs two INFO lines per message by default; that costs ~30 % throughput.
    return RabbitBroker(
        settings.rabbitmq_url.get_secret_value(),
        logger=logging.getLogger(f"{settings.service_name}.broker"),
        log_level=logging.DEBUG,
        reconnect_interval=1.0,
        graceful_timeout=CONSUMER_GRACE_SECONDS,
        app_id=settings.service_name,
        default_channel=Channel(prefetch_count=prefetch_count or 2 * settings.batch_max_size),
        middlewares=middlewares,
    )


def _delivery_count(message: RabbitMessage) -> int:
    """How often RabbitMQ delivered this message before (quorum queues count it in a header)."""
    raw = getattr(message, "raw_message", None)
    value = (getattr(raw, "headers", None) or {}).get("x-delivery-count", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _redelivered(message: RabbitMessage) -> bool:
    raw = getattr(message, "raw_message", None)
    return bool(getattr(raw, "redelivered", False)) or _delivery_count(message) > 0


@dataclass
class Subscription:
    consumer: str
    routing_key: str
    """The event type (the queue's name is ``<consumer>.<event type>``)."""
    queue: RabbitQueue
    exchange: RabbitExchange
    dlx: RabbitExchange
    dlq: RabbitQueue
    batcher: Batcher[Any, None] | None = None
    bindings: tuple[str, ...] = ()
    """The queue's binding keys on ``exchange`` (``EventData.binding_keys``): the first is ``queue``'s own."""

    @property
    def consumer_queue(self) -> str:
        """The queue's name without the namespace (``orders.stock_reserved``)."""
        return consumer_queue(self.consumer, self.routing_key)


@dataclass
class EventBus:
    """The broker of one service plus what it declared: consumers and publishing in one place."""

    settings: ServiceSettings
    broker: RabbitBroker
    # The event models this service publishes (None: undeclared, as in tests and tools: every exchange
    # is declared and any event may be published). A service's bus publishes nothing else.
    publishes: Sequence[type[EventData]] | None = None
    max_deliveries: int = 5
    retry_backoff_seconds: float = 0.1
    transient_backoff_cap_seconds: float = 5.0
    subscriptions: list[Subscription] = field(default_factory=list)
    _connected: bool = field(default=False, init=False)
    _stopped_consuming: bool = field(default=False, init=False)
    # One batch commits at a time per service: its consumers write the same hot documents (stock,
    # counters), and concurrent transactions on them would only abort each other.
    _commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def subscribe(self, model: type[P], handler: BatchHandler[P], *, consumer: str | None = None,
                  max_batch: int | None = None, linger: float | None = None,
                  batcher: Batcher[Any, None] | None = None, only: Collection[str] | None = None) -> Subscription:
        """Register ``handler`` for batches of ``model``'s events on this service's own queue.

        Subscriptions given the same ``batcher`` (see :meth:`batcher`) share their batches: one
        transaction then serves the deliveries of several queues. ``only``: for a type routed by a
        payload field (``EventData.ROUTED_BY``), the values the queue is bound to (the others are
        never sent to it); all of them by default. (FastStream's in-memory ``TestRabbitBroker`` knows
        only the first binding key: tests of such a queue there subscribe without ``only``.)
        """
        routing_key = model.TYPE
        bindings = model.binding_keys(only)
        consumer = consumer or self.settings.service_name
        exchange_name = EXCHANGE_OF[routing_key]
        name = queue_name(self.settings, consumer, routing_key)
        arguments: QuorumQueueArgs = {
            "x-dead-letter-exchange": self.settings.namespace + exchange_name + ".dlx",
            "x-dead-letter-routing-key": name,
            "x-delivery-limit": self.max_deliveries,
        }
        if self.settings.consumers == "single-active":
            arguments[SINGLE_ACTIVE_CONSUMER] = True
        queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, routing_key=bindings[0],
                            arguments=arguments)
        if batcher is None:
            batcher = self.batcher(handler, max_batch=max_batch, linger=linger, name=name)
        sub = Subscription(
            consumer=consumer,
            routing_key=routing_key,
            queue=queue,
            exchange=exchange(self.settings, exchange_name),
            dlx=dead_letter_exchange(self.settings, exchange_name),
            dlq=RabbitQueue(name + ".dlq", durable=True, routing_key=name),
            batcher=batcher,
            bindings=bindings,
        )
        marker_prefix = f"{consumer}.{routing_key}"
        redelivered = EVENTS_REDELIVERED.labels(marker_prefix)
        dead_lettered = EVENTS_DEAD_LETTERED.labels(marker_prefix)

        context = self.broker.context

        async def consume(body: Any) -> None:
            # The message from FastStream's context, not as a ``message: RabbitMessage`` parameter: that is a
            # custom field, which FastStream's dependency solver resolves in a worker thread (and an anyio task
            # group) for every delivery.
            message: RabbitMessage = context.get_local("message")
            if _redelivered(message):
                redelivered.inc()
                log.info("redelivered: %s message %s (delivered %d times before)", routing_key,
                         getattr(message, "message_id", None), _delivery_count(message))
            try:
                event = CloudEvent.model_validate(body)
                if event.type != routing_key:
                    raise ValueError(f"event type {event.type!r} on the {routing_key!r} queue")
                data = model.model_validate(event.data)
            except (ValidationError, ValueError) as exc:
                # Malformed: no retry can fix it. Rejected without requeue = dead-lettered now.
                log.error("malformed %s event %s dead-lettered: %s", routing_key,
                          getattr(message, "message_id", None), exc)
                dead_lettered.inc()
                raise RejectMessage() from exc
            token = correlation_id_var.set(event.correlationid or event.id)
            try:
                await self._handle(batcher, Delivery(event, data, marker_prefix, tracing.current_traceparent()),
                                   routing_key, message, dead_lettered)
            finally:
                correlation_id_var.reset(token)

        consume.__name__ = f"{consumer}_{routing_key}"
        self.broker.subscriber(
            queue, sub.exchange, ack_policy=AckPolicy.NACK_ON_ERROR, title=name,
        )(consume)
        self.subscriptions.append(sub)
        return sub

    async def _handle(self, batcher: Batcher[Any, None], delivery: Delivery[Any], routing_key: str,
                      message: RabbitMessage, dead_lettered: Any) -> None:
        """Hand ``delivery`` to its batcher; retry transient failures here, let deterministic ones nack."""
        attempt = 0
        retried = TRANSACTION_RETRIES.labels(self.settings.service_name, "consumer")
        while True:
            try:
                await batcher.submit(delivery)
                return
            except Exception as exc:
                if is_transient(exc):
                    # Held, not nacked: a requeue would count toward the delivery limit.
                    delay = min(self.retry_backoff_seconds * 2**attempt, self.transient_backoff_cap_seconds)
                    attempt += 1
                    retried.inc()
                    log.warning("transient failure handling %s event %s (attempt %d: %s: %s); retrying in %.2fs",
                                routing_key, delivery.id, attempt, type(exc).__name__, exc, delay)
                    await asyncio.sleep(delay)
                    continue
                # Back off before the nack, exponentially per delivery, so a burst of failures does not
                # burn the delivery limit at once.
                deliveries = _delivery_count(message)
                delay = min(self.retry_backoff_seconds * 2**deliveries, 5.0)
                log.warning("handler for %s failed on event %s (delivery %d of %d); redelivery in %.1fs",
                            routing_key, delivery.id, deliveries + 1, self.max_deliveries, delay, exc_info=True)
                if deliveries + 1 > self.max_deliveries:
                    dead_lettered.inc()  # past the delivery limit: RabbitMQ dead-letters this nack
                await asyncio.sleep(delay)
                raise

    def batcher(self, handler: BatchHandler[Any], *, max_batch: int | None = None, linger: float | None = None,
                hold: float = 0.0, name: str = "batch") -> Batcher[Any, None]:
        """A batcher that hands batches to ``handler``, committing one at a time with this service's other ones.

        ``hold``: how long a batch's first item always waits for company (``shopkit.batching``), for
        consumers nobody waits on.
        """

        group = name.removeprefix(self.settings.namespace)

        async def flush(batch: Sequence[Delivery[Any]]) -> list[None]:
            if tracing.tracing_enabled():
                with tracing.batch_span(group, [d.traceparent for d in batch]):
                    await handler(batch)
            else:
                await handler(batch)
            return [None] * len(batch)

        return Batcher(flush, max_size=max_batch or self.settings.batch_max_size,
                       linger=self.settings.batch_linger_ms / 1000 if linger is None else linger,
                       hold=hold, lock=self._commit_lock, name=name, on_batch=BATCH_SIZE.labels(group).observe)

    def consumed_exchanges(self) -> set[str]:
        return {EXCHANGE_OF[sub.routing_key] for sub in self.subscriptions}

    def published_exchanges(self) -> set[str]:
        return set(self._published)

    @functools.cached_property
    def _published(self) -> frozenset[str]:
        if self.publishes is None:
            return frozenset(EXCHANGE_OF.values())
        return frozenset(model.EXCHANGE for model in self.publishes)

    def used_exchanges(self) -> list[str]:
        """The topic exchanges this bus declares: those it consumes from or publishes to."""
        return sorted(self.consumed_exchanges() | self.published_exchanges())

    def consumers(self) -> set[str]:
        return {sub.consumer for sub in self.subscriptions}

    @property
    def topology(self) -> Topology:
        return Topology.of(self.settings)

    def permissions(self) -> Permissions:
        """What this bus needs on RabbitMQ and nothing more (:meth:`Topology.permissions`)."""
        return self.topology.permissions(self.consumers(), self.consumed_exchanges(), self.published_exchanges())

    async def declare(self) -> None:
        """Declare what this service uses (idempotent; call after connecting).

        Its topic exchanges (with their alternate exchanges), the dead-letter exchanges of what it
        consumes, each consumer queue's DLQ, and each consumer's replay exchange with its queues
        bound to it by name (``shopkit.messaging.deadletters`` replays through it).
        """
        await self.declare_topic_exchanges()
        for name in sorted(self.consumed_exchanges()):
            await self.broker.declare_exchange(self.topology.dead_letter_exchange(name))
        await self.declare_dead_letter_queues()
        await self.settle_consumer_modes()
        replay: dict[str, Any] = {}
        for sub in self.subscriptions:
            if sub.consumer not in replay:
                replay[sub.consumer] = await self.broker.declare_exchange(RabbitExchange(
                    self.topology.replay_exchange(sub.consumer), type=ExchangeType.DIRECT,
                    durable=True))
            queue = await self.broker.declare_queue(sub.queue)  # as its subscriber declares it on start
            await queue.bind(replay[sub.consumer], routing_key=sub.consumer_queue)
            for key in sub.bindings[1:]:  # its subscriber binds the first on start
                await queue.bind(sub.exchange.name, routing_key=key)

    async def settle_consumer_modes(self) -> None:
        """Declare each consumer queue in this bus's consumer mode, or keep it in the mode it was created in.

        RabbitMQ refuses to re-declare a queue with other arguments (``PRECONDITION_FAILED``), and
        ``x-single-active-consumer`` can only be given when a queue is created (no policy sets it). A
        queue created in the other mode (``MICROSHOP_CONSUMERS``, or by a version before the setting) is
        used as it is: its subscription's arguments are switched to the queue's (so the subscriber's own
        declaration and every reconnect's agree with it), and an error in the log says how to migrate.
        Over a connection of its own: a refused declaration closes its channel.
        """
        url = self.settings.rabbitmq_url.get_secret_value()
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for sub in self.subscriptions:
                arguments = sub.queue.arguments if sub.queue.arguments is not None else {}
                try:
                    await channel.declare_queue(sub.queue.name, durable=True, arguments=arguments)
                    continue
                except aio_pika.exceptions.ChannelPreconditionFailed:
                    channel = await connection.channel()
                wanted = SINGLE_ACTIVE_CONSUMER in arguments
                other = {k: v for k, v in arguments.items() if k != SINGLE_ACTIVE_CONSUMER}
                if not wanted:
                    other[SINGLE_ACTIVE_CONSUMER] = True
                await channel.declare_queue(sub.queue.name, durable=True, arguments=other)  # else: a real mismatch
                arguments.clear()
                arguments.update(other)  # in place: the subscriber holds this queue object
                log.error("queue %s was created with %s consumers; it is used so. Migrate: stop every process of "
                          "%s, let nothing publish to it (or accept losing what it holds), delete the queue "
                          "(rabbitmqctl delete_queue or the management UI), start the service.",
                          sub.queue.name, "shared" if wanted else "single-active", sub.consumer)

    async def declare_dead_letter_queues(self) -> None:
        """Each consumer queue's DLQ, bound to its dead-letter exchange, over a connection of its own.

        Not through the broker's robust channel, which declares again everything it ever declared on
        every reconnect: a DLQ is a classic queue, which lives on one node of a RabbitMQ cluster, and
        while that node is down declaring it fails (``NOT_FOUND - home node ... is down``), and with it
        the whole reconnection, so the service would consume nothing until that node is back
        (tests/cluster). A DLQ that cannot be declared now is logged and skipped: it exists already
        (only an existing queue has a home node), and its dead letters wait there for its node.
        """
        url = self.settings.rabbitmq_url.get_secret_value()
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for sub in self.subscriptions:
                try:
                    dlq = await channel.declare_queue(sub.dlq.name, durable=True)
                    await dlq.bind(sub.dlx.name, routing_key=sub.dlq.routing_key)
                except aio_pika.exceptions.ChannelNotFoundEntity as exc:
                    log.warning("dead-letter queue %s unavailable (%s); its dead letters wait on its node",
                                sub.dlq.name, exc)
                    channel = await connection.channel()

    async def declare_topic_exchanges(self) -> None:
        """Each topic exchange this bus uses with an alternate exchange, so an event no queue is bound for is kept.

        ``<exchange>`` has ``alternate-exchange: <exchange>.unroutable`` (fanout), bound to the
        ``<namespace>unroutable`` queue (at most ``UNROUTABLE_MAX_LENGTH`` messages, oldest dropped
        first), which ``python -m shopctl.dlq list`` counts. RabbitMQ refuses to change the arguments
        of an existing exchange (``PRECONDITION_FAILED``): an exchange created by an older version
        is used as it is, with an error in the log saying how to migrate it (delete the exchange
        while the shop is stopped; the services re-create it and re-bind their queues on start).
        """
        url = self.settings.rabbitmq_url.get_secret_value()
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                self.topology.unroutable_queue(), durable=True,
                arguments={"x-max-length": UNROUTABLE_MAX_LENGTH, "x-overflow": "drop-head"})
            for name in self.used_exchanges():
                topic, alternate = self.topology.exchange(name).name, self.topology.alternate_exchange(name)
                fanout = await channel.declare_exchange(alternate, aio_pika.ExchangeType.FANOUT, durable=True)
                await queue.bind(fanout)
                try:
                    await channel.declare_exchange(topic, aio_pika.ExchangeType.TOPIC,
                                                   durable=True, arguments={"alternate-exchange": alternate})
                except aio_pika.exceptions.ChannelPreconditionFailed:
                    log.error("exchange %s exists without the alternate exchange %s: unroutable events on it are "
                              "dropped. Migrate: stop the shop, delete the exchange (rabbitmqctl or the management "
                              "UI), start the shop.", topic, alternate)
                    channel = await connection.channel()
                    queue = await channel.declare_queue(
                        self.topology.unroutable_queue(), durable=True,
                        arguments={"x-max-length": UNROUTABLE_MAX_LENGTH, "x-overflow": "drop-head"})
                    await channel.declare_exchange(topic, aio_pika.ExchangeType.TOPIC,
                                                   durable=True, passive=True)

    async def publish(self, event: CloudEvent) -> None:
        """Publish persistently with publisher confirms (the call returns once the broker has it).

        Only events of the declared ``publishes`` models: the service's broker user may write to no
        other exchange, so an undeclared one fails here, clearly, rather than as ACCESS_REFUSED.
        On this bus's own publishing channel (``shopkit.messaging.publishing``): a nack raises
        :class:`PublishNacked`, and the next publish goes out on a new channel.
        """
        if EXCHANGE_OF[event.type] not in self._published:
            raise ValueError(f"{self.settings.service_name} does not declare that it publishes {event.type!r} "
                             "(Service(publishes=...))")
        publishing = publishing_channel(self.broker)
        if publishing is None:  # FastStream's TestRabbitBroker: no channel
            await self._publish(event)
            return
        async with publishing.publishing():
            await self._publish(event)

    async def _publish(self, event: CloudEvent) -> None:
        await self.broker.publish(
            event.model_dump(mode="json"),
            exchange=self.topology.exchange(EXCHANGE_OF[event.type]),
            routing_key=event.routing_key,
            persist=True,
            message_id=event.id,
            correlation_id=event.correlationid,
            content_type="application/json",
            mandatory=False,
        )

    async def connect(self) -> None:
        """Connect and declare the topology: publishing works from here on, nothing is consumed yet."""
        await self.broker.connect()
        await self.declare()
        self._connected = True

    async def start(self) -> None:
        """Start consuming (connecting first if needed)."""
        if not self._connected:
            await self.connect()
        await self.broker.start()
        self._stopped_consuming = False

    async def stop_consuming(self) -> None:
        """Take no more deliveries and finish those in hand (their batches commit, they are acked); publishing works on.

        Each consumer is cancelled first (``basic.cancel``: RabbitMQ sends it nothing more, and what it
        sent before the cancel-ok is handled), then the deliveries in hand run to completion (at most the
        broker's ``graceful_timeout``). FastStream's own stop does it the other way round: it stops
        handling first, so what arrives meanwhile stays unacked and comes back *redelivered* once the
        channel closes; a clean shutdown redelivers nothing here. (Only deliveries in transit at the
        moment of the cancel, which never reached this process, may come back redelivered: RabbitMQ's
        quorum queues return them, counting a delivery; docs/kubernetes.md.)
        """
        if not self._connected or self._stopped_consuming:
            return
        self._stopped_consuming = True
        subscribers = [sub for sub in self.broker.subscribers if isinstance(sub, RabbitSubscriber)]
        log.info("cancelling %d consumers", len(subscribers))
        for sub in subscribers:
            queue, tag = sub._queue_obj, sub._consumer_tag
            if queue is not None and tag is not None and not queue.channel.is_closed:
                try:
                    await queue.cancel(tag)
                except Exception as exc:  # the channel went away: its deliveries are requeued anyway
                    log.warning("could not cancel the consumer of %s: %s", queue.name, exc)
                sub._consumer_tag = None
        await asyncio.sleep(0.05)  # deliveries received before a cancel-ok start their handlers
        log.info("consumers cancelled; finishing the %d deliveries in hand",
                 sum(sub.lock.qsize for sub in subscribers if isinstance(sub.lock, MultiLock)))
        for sub in subscribers:
            await sub.stop()  # waits for the deliveries in hand
        log.info("consumers stopped")
        for batcher in {id(sub.batcher): sub.batcher for sub in self.subscriptions if sub.batcher}.values():
            await batcher.close()
            stats = batcher.stats
            if stats.batches:
                log.info("%s: %d events in %d batches (mean %.1f, largest %d, %d fell back to one by one)",
                         batcher.name, stats.items, stats.batches, stats.items / stats.batches, stats.largest,
                         stats.fallbacks)

    async def stop(self) -> None:
        """Stop consuming (:meth:`stop_consuming`) and disconnect (idempotent)."""
        if self._connected:
            await self.stop_consuming()
            self._connected = False
            await self.broker.stop()
