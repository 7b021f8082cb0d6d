"""The outbox's statements and relay rounds per committed transaction: ``python benchmarks/outbox_statements.py``.

Starts its own SecantusDB, then commits ``--transactions`` transactions (one event each, as a hop of
the saga does at light load) at ``--rate`` per second through ``in_transaction`` + ``add_to_outbox``,
spread over ``--replicas`` relays (each with its own client, as separate replicas have), notifying
the writer's relay after each commit as the services do. It waits until every record is published
and deleted, then prints what the clients sent about the ``outbox`` collection, by command (find:
a relay's read of free records, i.e. a poll or a claim round; update: a claim or a release; delete;
insert: the writers'), per transaction, and the records each relay published (their sum must equal
the transactions: none twice). It uses only the outbox's public API, so the same file measures
another checkout when run with that checkout's interpreter. Run it under ``flock /work/.bench.lock``
like every benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from devtools.secantus import mongo_url, port_of, secantus_proc, wait_secantus
from shopkit.contracts.events import StockLow
from shopkit.events import new_event
from shopkit.messaging.bus import EventBus, create_broker
from shopkit.messaging.outbox import OUTBOX, OutboxRelay, add_to_outbox, ensure_outbox_indexes
from shopkit.mongo import in_transaction
from shopkit.settings import ServiceSettings


class OutboxCommands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get(event.command_name) == OUTBOX:
            self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def measure(url: str, transactions: int, rate: float, replicas: int) -> None:
    settings = ServiceSettings(service_name="outboxbench", namespace="benchoutbox.")
    bus = EventBus(settings, create_broker(settings))
    await bus.broker.connect()
    await bus.declare()
    commands = OutboxCommands()
    clients: list[AsyncMongoClient[Any]] = [AsyncMongoClient(url, event_listeners=[commands])
                                            for _ in range(replicas)]
    name = f"outboxbench_{int(time.time())}"
    dbs = [client[name] for client in clients]
    await ensure_outbox_indexes(dbs[0])
    relays = [OutboxRelay(db, bus) for db in dbs]
    for relay in relays:
        relay.start()
    await asyncio.sleep(0.5)
    commands.counts.clear()
    started = time.monotonic()
    for i in range(transactions):
        await asyncio.sleep(max(started + i / rate - time.monotonic(), 0))
        client, db, relay = clients[i % replicas], dbs[i % replicas], relays[i % replicas]

        async def write(session: Any, db: Any = db, i: int = i) -> None:
            await add_to_outbox(db, [new_event(StockLow(product_id=f"p{i}", stock=i), "bench")], session)

        await in_transaction(client, write)
        relay.notify()
    for _ in range(1200):  # at most a minute
        if not await dbs[0][OUTBOX].count_documents({}):
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    counts = dict(commands.counts)
    counts["count (this script's wait)"] = counts.pop("aggregate", 0)
    for relay in relays:
        await relay.stop()
    for client in clients:
        await client.close()
    await bus.broker.stop()
    outbox = {k: v for k, v in counts.items() if not k.startswith("count")}
    print(f"{transactions} transactions at {rate:g}/s over {replicas} relay(s), {elapsed:.1f} s until all deleted")
    print("  outbox statements per transaction: "
          + ", ".join(f"{k} {v / transactions:.2f}" for k, v in sorted(outbox.items()))
          + f"; total {sum(outbox.values()) / transactions:.2f}")
    published = [r.published for r in relays]
    print(f"  records published by each relay: {published} (sum {sum(published)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    proc = secantus_proc().start()
    try:
        wait_secantus(proc)
        asyncio.run(measure(mongo_url(port_of(proc)), args.transactions, args.rate, args.replicas))
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
