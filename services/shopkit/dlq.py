"""Dead letters: list, inspect, replay or discard what a consumer's ``<queue>.dlq`` holds.

A delivery lands in a dead-letter queue when its event is malformed (rejected at once) or its
handler failed deterministically ``max_deliveries`` times (``shopkit.broker``); transient
failures never put it there. Everything here speaks plain AMQP to the DLQs (``basic.get``,
``ack``), so it works against any RabbitMQ a service can reach:

- *list*: each consumer queue's DLQ and how many dead letters it holds (:meth:`DeadLetters.depths`,
  also what a metric or health hook reads: one passive ``queue.declare`` per DLQ);
- *show*: the dead letters of one queue, oldest first, with why they died (``x-death``); they
  are fetched unacknowledged and put back untouched when the channel closes;
- *replay*: republish a dead letter (same body, message id, correlation id and headers) straight
  into the consumer queue it died in, then ack it out of the DLQ. Straight into that queue
  (through the consumer's replay exchange ``<service>.replay``, to which each of its queues is
  bound by name), not to the original topic exchange: the event failed for *this* consumer only;
  republishing it to the exchange would deliver it to every other consumer again (they would
  dedupe it, but need not see it at all). Not through RabbitMQ's default exchange either: a
  service's broker user may not write to it (it reaches every queue). Replay after fixing the
  cause: a poison event dead-letters again;
- *discard*: ack it out of the DLQ for good.

Queues are named as their consumers name them without the namespace, ``<service>.<event type>``
(``analytics.order_created``). Two ways in:

- ``python -m shopkit.dlq list|show|replay|discard`` (reads ``MICROSHOP_RABBITMQ_URL`` and
  ``MICROSHOP_NAMESPACE`` like the services; see ``--help``);
- each consuming service's admin routes, through the gateway:
  ``GET /api/<service>/admin/dead-letters``, ``GET .../dead-letters/{queue}``,
  ``POST .../dead-letters/{queue}/replay`` and ``.../discard`` (body ``{"ids": [...]}`` or
  ``{"all": true}``), admin only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiormq.exceptions import ChannelNotFoundEntity
from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK
from pydantic import BaseModel, Field

from shopkit import registry
from shopkit.auth import requires_admin
from shopkit.broker import UNROUTABLE_QUEUE, replay_exchange_name
from shopkit.errors import ProblemError
from shopkit.events import EXCHANGE_OF
from shopkit.settings import ServiceSettings

DLQ_SUFFIX = ".dlq"
MAX_FETCH = 1000


class DeadLetter(BaseModel):
    """One dead-lettered message as an operator sees it."""

    message_id: str | None
    queue: str = Field(description="The consumer queue it died in, without the namespace.")
    event_type: str | None = Field(description="The routing key it was published with (its event type).")
    reason: str | None = Field(description="Why RabbitMQ dead-lettered it: `rejected` (malformed) or "
                                           "`delivery_limit` (failed every delivery).")
    deaths: int = Field(description="How often it was dead-lettered from this queue.")
    first_death_at: datetime | None = None
    correlation_id: str | None = None
    body: Any = Field(description="The message body (JSON if it parses, else text).")


class QueueDepth(BaseModel):
    queue: str
    dead_letters: int


class Selection(BaseModel):
    """Which dead letters to replay or discard: these message ids, or all of them."""

    ids: list[str] = Field(default_factory=list, max_length=MAX_FETCH)
    all: bool = False


class Settled(BaseModel):
    queue: str
    ids: list[str | None]


def _x_death(message: AbstractIncomingMessage, namespace: str, queue: str) -> dict[str, Any]:
    deaths = (message.headers or {}).get("x-death") or []
    full = namespace + queue
    for death in deaths if isinstance(deaths, list) else []:
        if isinstance(death, dict) and death.get("queue") == full:
            return death
    return deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def describe(message: AbstractIncomingMessage, namespace: str, queue: str) -> DeadLetter:
    death = _x_death(message, namespace, queue)
    keys = death.get("routing-keys") or []
    time = death.get("time")
    return DeadLetter(
        message_id=message.message_id, queue=queue, event_type=str(keys[0]) if keys else None,
        reason=str(death["reason"]) if death.get("reason") else None, deaths=int(death.get("count") or 1),
        first_death_at=time if isinstance(time, datetime) else None, correlation_id=message.correlation_id,
        body=_body(message.body),
    )


class DeadLetters:
    """The DLQs of one namespace. Opens its connection on first use; :meth:`close` when done."""

    def __init__(self, url: str, namespace: str = "") -> None:
        self.url = url
        self.namespace = namespace
        self._connection: AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self.url, timeout=5)
            return self._connection

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[AbstractChannel]:
        connection = await self._connect()
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)  # unrouted: not acked
        try:
            yield channel
        finally:
            # Whatever was fetched and not acked goes back to its DLQ, in its place, untouched.
            if not channel.is_closed:
                await channel.close()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def dlq_name(self, queue: str) -> str:
        return self.namespace + queue + DLQ_SUFFIX

    async def depths(self, queues: Sequence[str]) -> dict[str, int]:
        """Dead letters per consumer queue (a DLQ not declared yet counts 0). Cheap: one passive declare each."""
        result: dict[str, int] = {}
        connection = await self._connect()
        for queue in queues:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(self.dlq_name(queue), passive=True)
                result[queue] = int(declared.declaration_result.message_count or 0)
            except ChannelNotFoundEntity:
                result[queue] = 0
            finally:
                if not channel.is_closed:
                    await channel.close()
        return result

    async def unroutable(self) -> int:
        """How many events no queue was bound for (the ``<namespace>unroutable`` queue; ``shopkit.broker``)."""
        connection = await self._connect()
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(self.namespace + UNROUTABLE_QUEUE, passive=True)
            return int(declared.declaration_result.message_count or 0)
        except ChannelNotFoundEntity:
            return 0
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _fetch(self, channel: AbstractChannel, queue: str, limit: int) -> list[AbstractIncomingMessage]:
        try:
            dlq = await channel.declare_queue(self.dlq_name(queue), passive=True)
        except ChannelNotFoundEntity:
            return []
        messages: list[AbstractIncomingMessage] = []
        while len(messages) < limit:
            message = await dlq.get(no_ack=False, fail=False, timeout=5)
            if message is None:
                break
            messages.append(message)
        return messages

    async def show(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters of ``queue``, oldest first; they stay in the DLQ."""
        async with self._channel() as channel:
            return [describe(m, self.namespace, queue) for m in await self._fetch(channel, queue, limit)]

    async def replay(self, queue: str, ids: Sequence[str] | None = None, limit: int = MAX_FETCH) -> list[str | None]:
        """Republish the chosen dead letters (``ids``; ``None``: all) into ``queue``, then ack them out of the DLQ."""
        async with self._channel() as channel:
            replay_exchange = await channel.get_exchange(
                replay_exchange_name(self.namespace, queue.partition(".")[0]), ensure=False)
            done: list[str | None] = []
            for message in await self._fetch(channel, queue, limit):
                if ids is not None and message.message_id not in ids:
                    continue
                headers = {k: v for k, v in (message.headers or {}).items() if k not in ("x-delivery-count",)}
                await replay_exchange.publish(
                    aio_pika.Message(
                        message.body, headers=headers, message_id=message.message_id,
                        correlation_id=message.correlation_id, content_type=message.content_type,
                        content_encoding=message.content_encoding, app_id=message.app_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=message.timestamp,
                        type=message.type),
                    routing_key=queue)  # confirmed before the ack below
                await message.ack()
                done.append(message.message_id)
            return done

    async def discard(self, queue: str, ids: Sequence[str] | None = None, limit: int = MAX_FETCH
                      ) -> list[str | None]:
        """Ack the chosen dead letters (``ids``; ``None``: all) out of the DLQ for good."""
        async with self._channel() as channel:
            done: list[str | None] = []
            for message in await self._fetch(channel, queue, limit):
                if ids is None or message.message_id in ids:
                    await message.ack()
                    done.append(message.message_id)
            return done


def dead_letter_controller(service: str, queues: Sequence[str], letters: DeadLetters) -> type[Controller]:
    """Admin routes for a service's own DLQs, under ``/<service>/admin/dead-letters``."""
    known = set(queues)

    def checked(queue: str) -> str:
        if queue not in known:
            raise ProblemError(404, f"{service} has no consumer queue {queue!r}", type_="queue-not-found",
                               queues=sorted(known))
        return queue

    async def unavailable(work: Any) -> Any:
        try:
            return await work
        except (aio_pika.exceptions.AMQPError, OSError, TimeoutError) as exc:
            raise ProblemError(503, f"the broker is unavailable: {type(exc).__name__}", type_="broker-unavailable",
                               headers={"Retry-After": "5"}) from exc

    class DeadLetterController(Controller):
        path = f"/{service}/admin/dead-letters"
        tags = ["dead letters"]
        guards = [requires_admin]
        security = [{"BearerToken": []}]  # shopkit.app.BEARER (app imports this module)

        @get("/", summary=f"Dead letters per {service} consumer queue", description="Admin only.")
        async def list_queues(self) -> list[QueueDepth]:
            depths = await unavailable(letters.depths(sorted(known)))
            return [QueueDepth(queue=q, dead_letters=n) for q, n in depths.items()]

        @get("/{queue:str}", summary="The dead letters of one queue, oldest first",
             description="Admin only. They stay in the dead-letter queue.")
        async def show_queue(self, queue: FromPath[str]) -> list[DeadLetter]:
            return await unavailable(letters.show(checked(queue)))  # type: ignore[no-any-return]

        @post("/{queue:str}/replay", summary="Replay dead letters into their queue", status_code=HTTP_200_OK,
              description="Admin only. Body: `{\"ids\": [...]}` or `{\"all\": true}`.")
        async def replay(self, queue: FromPath[str], data: JSONBody[Selection]) -> Settled:
            ids = None if data.all else data.ids
            return Settled(queue=queue, ids=await unavailable(letters.replay(checked(queue), ids)))

        @post("/{queue:str}/discard", summary="Discard dead letters", status_code=HTTP_200_OK,
              description="Admin only. Body: `{\"ids\": [...]}` or `{\"all\": true}`.")
        async def discard(self, queue: FromPath[str], data: JSONBody[Selection]) -> Settled:
            ids = None if data.all else data.ids
            return Settled(queue=queue, ids=await unavailable(letters.discard(checked(queue), ids)))

    return DeadLetterController


# The command line ----------------------------------------------------------------------------------

# The services with an event bus (shopkit.registry).
CONSUMERS = registry.names(registry.on_bus())


def consumer_queues(services: Sequence[str]) -> list[str]:
    """The consumer queues (without namespace) the given services declare, from their apps."""
    from shopkit.asyncapi import service_bus  # imports every service's app: only the command line needs it

    return [f"{sub.consumer}.{sub.routing_key}" for name in services for sub in service_bus(name).subscriptions]


async def _main(args: argparse.Namespace) -> int:
    settings = ServiceSettings()
    letters = DeadLetters(args.url or settings.rabbitmq_url.get_secret_value(),
                          settings.namespace if args.namespace is None else args.namespace)
    try:
        if args.command == "list":
            for queue, depth in (await letters.depths(consumer_queues(args.service or CONSUMERS))).items():
                if depth or args.all:
                    print(f"{queue}\t{depth}")
            unroutable = await letters.unroutable()
            if unroutable or args.all:
                print(f"{UNROUTABLE_QUEUE} (published to {', '.join(sorted(set(EXCHANGE_OF.values())))} with no "
                      f"queue bound)\t{unroutable}")
        elif args.command == "show":
            for letter in await letters.show(args.queue, args.limit):
                print(letter.model_dump_json(indent=None if args.compact else 2))
        else:
            ids = None if args.all else args.id
            if not ids and ids is not None:
                print("name the dead letters (--id, repeatable) or pass --all", file=sys.stderr)
                return 2
            settle = letters.replay if args.command == "replay" else letters.discard
            done = await settle(args.queue, ids)
            print(f"{args.command}ed {len(done)} dead letter(s) of {args.queue}: {' '.join(map(str, done))}")
    finally:
        await letters.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shopkit.dlq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="AMQP URL (default: MICROSHOP_RABBITMQ_URL)")
    parser.add_argument("--namespace", help="queue name prefix (default: MICROSHOP_NAMESPACE)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="dead letters per consumer queue (non-empty ones unless --all)")
    listing.add_argument("--service", action="append", choices=CONSUMERS, help="only this service (repeatable)")
    listing.add_argument("--all", action="store_true", help="also the empty queues")
    show = commands.add_parser("show", help="the dead letters of a queue, as JSON lines")
    show.add_argument("queue", help="consumer queue without namespace, e.g. analytics.order_created")
    show.add_argument("--limit", type=int, default=100)
    show.add_argument("--compact", action="store_true", help="one line per dead letter")
    for name, what in (("replay", "republish into the queue, then remove from the DLQ"),
                       ("discard", "remove from the DLQ for good")):
        cmd = commands.add_parser(name, help=what)
        cmd.add_argument("queue")
        cmd.add_argument("--id", action="append", default=[], help="a message id (repeatable)")
        cmd.add_argument("--all", action="store_true", help="every dead letter of the queue")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
