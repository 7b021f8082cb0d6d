"""Every name the shop uses on RabbitMQ, and the permissions a service needs on them.

:class:`Topology` is the one place a queue or exchange name is built (the bus declares them, the
dead-letter tools read them, the chart grants them), so the naming scheme lives here only:
``<namespace><exchange>`` topic exchanges with ``.unroutable`` and ``.dlx`` siblings, consumer
queues ``<namespace><consumer>.<event type>`` with a ``.dlq`` each, and one ``<consumer>.replay``
exchange per consumer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from faststream.rabbit import ExchangeType, RabbitExchange

from shopkit.settings import ServiceSettings

UNROUTABLE_QUEUE = "unroutable"
UNROUTABLE_MAX_LENGTH = 100_000
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Permissions:
    """RabbitMQ permission regexes (``rabbitmqctl set_permissions <user> <configure> <write> <read>``)."""

    configure: str
    write: str
    read: str


def consumer_queue(consumer: str, routing_key: str) -> str:
    """A consumer queue's name without the namespace, ``<consumer>.<event type>`` (``orders.stock_reserved``)."""
    return f"{consumer}.{routing_key}"


@dataclass(frozen=True)
class Topology:
    """The broker names of one namespace (``MICROSHOP_NAMESPACE``)."""

    namespace: str = ""

    @classmethod
    def of(cls, settings: ServiceSettings) -> Topology:
        return cls(settings.namespace)

    def exchange(self, name: str) -> RabbitExchange:
        """A topic exchange as publishers and subscribers use it: passive, the bus's ``declare`` creates it.

        Passive, so neither a publish nor a subscriber's start ever re-declares it with other
        arguments than the ones it was created with (an exchange made before it had an alternate
        exchange keeps working; ``EventBus.declare_topic_exchanges`` says how to migrate it).
        """
        return RabbitExchange(self.namespace + name, type=ExchangeType.TOPIC, durable=True, declare=False)

    def alternate_exchange(self, name: str) -> str:
        return self.namespace + name + ".unroutable"

    def dead_letter_exchange(self, name: str) -> RabbitExchange:
        return RabbitExchange(self.namespace + name + ".dlx", type=ExchangeType.TOPIC, durable=True)

    def named(self, name: str) -> str:
        """A name given without the namespace (``orders.stock_reserved``) as the broker knows it."""
        return self.namespace + name

    def unroutable_queue(self) -> str:
        return self.named(UNROUTABLE_QUEUE)

    def queue(self, consumer: str, routing_key: str) -> str:
        return self.named(consumer_queue(consumer, routing_key))

    def dlq(self, queue: str) -> str:
        """The dead-letter queue of a consumer queue (named without the namespace)."""
        return self.named(queue + DLQ_SUFFIX)

    def replay_exchange(self, consumer: str) -> str:
        """``<namespace><consumer>.replay``: a direct exchange each consumer queue is bound to by its own name.

        A dead letter is replayed through it into exactly the queue it died in. Through the
        consumer's own exchange, not RabbitMQ's default one: publishing to the default exchange reaches
        every queue, so granting it would let any service inject events into any other's queues.
        """
        return f"{self.namespace}{consumer}.replay"

    def permissions(self, consumers: set[str], consumed: set[str], published: set[str]) -> Permissions:
        """The least a service needs on the broker, from what its bus declares and uses.

        - its own names, ``<consumer>.…`` (queues, their DLQs, the replay exchange): everything;
        - each topic exchange it consumes from or publishes to (``E``): declare (configure) with its
          alternate exchange (RabbitMQ then checks read on ``E`` and write on ``E.unroutable``), bind
          its queues to it (read); write only on those it publishes to;
        - ``E.unroutable`` (fanout) and the ``unroutable`` queue it feeds: declare and bind;
        - ``E.dlx`` of each exchange it consumes from: declare, name as its queues' dead-letter
          exchange (write), bind the DLQs to it (read).

        Names are matched whole (``^…$``); nothing else, in particular not the default exchange.
        """
        ns = re.escape(self.namespace)
        own = [f"{re.escape(c)}\\..+" for c in sorted(consumers)]
        used = consumed | published
        rules = {
            "configure": [*own, UNROUTABLE_QUEUE, *_one_of(used, r"(?:\.unroutable)?"),
                          *_one_of(consumed, r"\.dlx")],
            "write": [*own, UNROUTABLE_QUEUE, *_one_of(published), *_one_of(used, r"\.unroutable"),
                      *_one_of(consumed, r"\.dlx")],
            "read": [*own, *_one_of(used, r"(?:\.unroutable)?"), *_one_of(consumed, r"\.dlx")],
        }
        return Permissions(**{what: f"^{ns}(?:{'|'.join(parts)})$" for what, parts in rules.items()})


def _one_of(names: set[str], suffix: str = "") -> list[str]:
    return [f"(?:{'|'.join(re.escape(n) for n in sorted(names))}){suffix}"] if names else []


# The same names from a service's settings (how ``EventBus.subscribe`` asks for them).

def queue_name(settings: ServiceSettings, consumer: str, routing_key: str) -> str:
    return Topology.of(settings).queue(consumer, routing_key)


def exchange(settings: ServiceSettings, name: str) -> RabbitExchange:
    return Topology.of(settings).exchange(name)


def dead_letter_exchange(settings: ServiceSettings, name: str) -> RabbitExchange:
    return Topology.of(settings).dead_letter_exchange(name)
