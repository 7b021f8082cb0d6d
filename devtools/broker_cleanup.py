"""Delete the exchanges and queues a test session (or `make compose-up-host`) declared under its namespace.

Tests share the machine's RabbitMQ with `make dev` and with each other; each session uses a
unique ``MICROSHOP_NAMESPACE`` prefix, and removes what it made at the end so the broker does
not fill up with quorum queues run after run. `make compose-down` does the same for the compose
shop on this host's broker: ``python -m devtools.broker_cleanup PREFIX [AMQP_URL]``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import warnings

import aio_pika


def _names(kind: str, prefix: str) -> list[str]:
    if not shutil.which("rabbitmqctl"):
        return []
    try:
        out = subprocess.run(["rabbitmqctl", "-q", "--timeout", "30", f"list_{kind}", "name"],
                             capture_output=True, text=True, timeout=40, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        warnings.warn(f"could not list RabbitMQ {kind} to clean up: {exc}", stacklevel=1)
        return []
    return [n.strip() for n in out.splitlines() if n.strip().startswith(prefix)]


async def _delete(url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue, timeout=10)
        for exchange in exchanges:
            await channel.exchange_delete(exchange, timeout=10)


def delete_namespace(url: str, prefix: str) -> int:
    """Remove every queue and exchange whose name starts with ``prefix``; returns how many."""
    assert prefix, "refusing to delete everything"
    queues, exchanges = _names("queues", prefix), _names("exchanges", prefix)
    if queues or exchanges:
        try:
            # Bounded: a clean-up must never hang a test run, whatever state the broker is in.
            asyncio.run(asyncio.wait_for(_delete(url, queues, exchanges), timeout=120))
        except (TimeoutError, aio_pika.exceptions.AMQPError, OSError) as exc:
            warnings.warn(f"could not delete the test queues under {prefix!r}: {exc!r}", stacklevel=1)
    return len(queues) + len(exchanges)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or not sys.argv[1]:
        sys.exit("usage: python -m devtools.broker_cleanup PREFIX [AMQP_URL]")
    deleted = delete_namespace(sys.argv[2] if len(sys.argv) == 3 else "amqp://guest:guest@127.0.0.1:5672/", sys.argv[1])
    print(f"[broker] deleted {deleted} queues and exchanges under {sys.argv[1]!r}")
