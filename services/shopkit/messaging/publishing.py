"""The channel a service publishes its events on: its own (not its consumers'), replaced after a nack.

RabbitMQ 3.10 (Debian's 3.10.8, this machine's) can leave a channel unable to publish to a quorum queue:
a channel that first publishes to the queue while the node leading it was just SIGKILLed (within about
half a second: a robust connection that was on that node and reconnected at once, or a channel opened
then) has every publish routed to that queue nacked for as long as that node stays down, although the
queue elected a new leader within a second or two. A channel opened a little later, even on the same
connection, is confirmed, and so are channels that had published before the crash
(docs/saga.md, "Infrastructure as clusters"). So every publish of an :class:`~shopkit.messaging.bus.EventBus`
goes out on a channel of its own, and a nacked publish retires that channel: the next publish opens a
new one, and the retired one is closed once the publishes in flight on it are answered. A channel of
its own also means that replacing it never touches the consumers (their channel, FastStream's default
one, holds their unacked deliveries).

:class:`PublishingChannel` takes the place of the declarer of FastStream's producer, so a publish still
goes through ``RabbitBroker.publish`` and its middlewares (tracing, metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aio_pika
from faststream.exceptions import IncorrectState
from faststream.rabbit import RabbitBroker
from faststream.rabbit.publisher.producer import AioPikaFastProducerImpl

if TYPE_CHECKING:
    from faststream.rabbit.helpers import RabbitDeclarer
    from faststream.rabbit.schemas import Channel, RabbitExchange, RabbitQueue

log = logging.getLogger("shopkit.broker")


class PublishNacked(Exception):
    """RabbitMQ nacked a publish (publisher confirms): it did not take the message; publish it again."""


@dataclass(eq=False)
class Lane:
    """One publishing channel: the exchanges looked up on it, its publishes in flight, and whether it is retired."""

    channel: aio_pika.abc.AbstractChannel
    connection: object  # the broker's connection it was opened on
    exchanges: dict[str, aio_pika.abc.AbstractExchange] = field(default_factory=dict)
    in_flight: int = 0
    retired: bool = False


_lane: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("shopkit_publishing_lane", default=None)


class PublishingChannel:
    """FastStream's producer's declarer, publishing on a channel of this object's (module docstring).

    The producer asks it for the exchange of each publish (``declare=False``): the exchange of that name
    on the current lane (declared passively once per lane). Queues (FastStream's RPC reply queue, unused
    here) are left to FastStream's declarer.
    """

    def __init__(self, broker: RabbitBroker, fallback: RabbitDeclarer) -> None:
        self._broker = broker
        self._fallback = fallback
        self._lane: Lane | None = None
        self._opening: asyncio.Future[Lane] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0  # channels opened (one, plus one per retired channel or lost connection)

    def _usable(self, lane: Lane | None) -> bool:
        # A robust channel reopens itself (after a reconnect, or a channel error): only a retired one, or
        # one of a connection the broker no longer has (stopped and connected again), is replaced.
        return lane is not None and not lane.retired and lane.connection is self._broker._connection

    async def current(self) -> Lane:
        """The lane publishes go out on now: opened if there is none, or it was retired.

        Publishes that find no lane wait for one opening, and go on in the order they came (a relay's
        batch is published in commit order).
        """
        lane = self._lane
        if lane is not None and self._usable(lane):
            return lane
        if self._opening is None or self._opening.done():
            self._opening = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._opening)

    async def _open(self) -> Lane:
        connection = self._broker._connection
        if connection is None:
            raise IncorrectState("the broker is not connected: connect() it before publishing")
        lane = self._lane = Lane(await connection.channel(publisher_confirms=True), connection)
        self.opened += 1
        return lane

    @contextlib.asynccontextmanager
    async def publishing(self) -> AsyncIterator[Lane]:
        """A publish inside this block goes out on the returned lane; a nack of it retires the lane."""
        lane = await self.current()
        lane.in_flight += 1
        token = _lane.set(lane)
        try:
            yield lane
        except aio_pika.exceptions.DeliveryError as exc:
            self.retire(lane)
            raise PublishNacked(f"RabbitMQ nacked the publish ({exc})") from exc
        finally:
            _lane.reset(token)
            lane.in_flight -= 1
            self._close_if_done(lane)

    def retire(self, lane: Lane) -> None:
        """Publish on a new channel from now on; ``lane``'s is closed once nothing is in flight on it."""
        if lane.retired:
            return
        lane.retired = True
        log.warning("a publish was nacked: publishing on a new channel from now on (RabbitMQ 3.10 can nack every "
                    "publish of a channel to a quorum queue whose leader's node crashed; docs/saga.md)")
        self._close_if_done(lane)

    def _close_if_done(self, lane: Lane) -> None:
        if not (lane.retired and lane.in_flight == 0 and not lane.channel.is_closed):
            return
        task = asyncio.create_task(self._close(lane.channel), name="close-retired-publishing-channel")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(channel: aio_pika.abc.AbstractChannel) -> None:
        try:
            await channel.close()
        except Exception as exc:  # the connection went away meanwhile: so did the channel
            log.debug("could not close a retired publishing channel: %s", exc)

    # -- faststream.rabbit.helpers.RabbitDeclarer ---------------------------------------------------------

    def disconnect(self) -> None:
        self._lane = None

    async def declare_exchange(self, exchange: RabbitExchange, declare: bool = False, *,
                               channel: Channel | None = None) -> aio_pika.RobustExchange:
        lane = _lane.get() or await self.current()
        if not exchange.name:
            return cast("aio_pika.RobustExchange", lane.channel.default_exchange)
        found = lane.exchanges.get(exchange.name)
        if found is None:
            # Passively, once per lane, as FastStream's own declarer does for a publish.
            found = lane.exchanges[exchange.name] = await lane.channel.get_exchange(exchange.name, ensure=True)
        return cast("aio_pika.RobustExchange", found)

    async def declare_queue(self, queue: RabbitQueue, declare: bool = False, *,
                            channel: Channel | None = None) -> aio_pika.RobustQueue:
        return await self._fallback.declare_queue(queue, declare, channel=channel)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(opened={self.opened})"


def publishing_channel(broker: RabbitBroker) -> PublishingChannel | None:
    """The broker's :class:`PublishingChannel`, put in place on first use (None: FastStream's TestRabbitBroker
    replaced the producer, and there is no channel to publish on)."""
    producer: Any = broker.config.producer
    if not isinstance(producer, AioPikaFastProducerImpl):
        return None
    if not isinstance(producer.declarer, PublishingChannel):
        producer.declarer = PublishingChannel(broker, producer.declarer)
    return producer.declarer
