"""``python -m shopctl.dlq list|show|replay|discard``: the dead letters of the shop's consumer queues.

What each command does is ``shopkit.messaging.deadletters.DeadLetters``'s (``--help`` lists them).
Reads ``MICROSHOP_RABBITMQ_URL`` and ``MICROSHOP_NAMESPACE`` like the services.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from shopctl.apps import CONSUMERS, consumer_queues
from shopkit.events import EXCHANGE_OF
from shopkit.messaging.deadletters import DeadLetters
from shopkit.messaging.topology import UNROUTABLE_QUEUE
from shopkit.settings import ServiceSettings


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
    parser = argparse.ArgumentParser(prog="python -m shopctl.dlq", description=__doc__.split("\n\n")[0])
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
