"""SecantusDB (a MongoDB wire-protocol server) as a separate process, for ``make dev`` and tests.

SecantusDB is GPL-2.0-only: it stays a development dependency, started as its own process
and reached over the wire; no shop code imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.infra import reachable
from devtools.procs import Proc, free_port, wait_until


def mongo_url(port: int) -> str:
    # retryWrites=false only here: SecantusDB slows down with retryable writes on; real MongoDB keeps them.
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false&directConnection=true"


# Without an oplog. SecantusDB advertises itself as a one-node replica set by default and then writes
# every change (the whole document) to its oplog, for change streams, which the shop does not use: the
# oplog grows to its cap (100,000 entries, ~35 per order: in about 2.5 minutes at 20 orders/s), and from
# then on every 1,000th write prunes the oldest 1,000 entries inside the write, under the store's lock.
# That made a long run slower and SecantusDB bigger as it went (docs/saga.md, "Steady over time").
# ``--standalone`` is SecantusDB's own switch that writes no oplog; its transactions work the same
# (tests/integration/test_secantus.py). Real MongoDB (the chart, compose.yaml) stays a replica set.
SERVER_FLAGS = ("--standalone",)
# What the services need to be told when their database is SecantusDB. Its TTL sweeper (every 60 s, not
# settable from its command line) keeps its WiredTiger session, and with it a snapshot, from one sweep to
# the next once any TTL index exists: WiredTiger can discard no old version and no deleted row meanwhile
# (docs/saga.md, "Steady over time"). With ``sweep`` the services delete their expired documents
# themselves and make no TTL index (shopkit.mongo.Retention). Real MongoDB keeps ``ttl-index``.
SERVICE_ENV = {"MICROSHOP_MONGO_EXPIRY": "sweep"}
LAUNCHER = "devtools.secantus_server"


def secantus_proc(port: int | None = None, storage: str | Path = ":memory:", *, auth: bool = False) -> Proc:
    """A SecantusDB server; ``auth`` requires SCRAM authentication (users created before, without it)."""
    port = port or free_port()
    return Proc(
        name="mongo",
        # SecantusDB's own command line, with a transaction's cursors released between its statements
        # (devtools/secantus_server.py: without it the whole server stalls for seconds under load).
        argv=[sys.executable, "-m", LAUNCHER, "--host", "127.0.0.1", "--port", str(port),
              "--storage-path", str(storage), "--log-level", "WARNING", *SERVER_FLAGS, *(["--auth"] if auth else [])],
        env={},
    )


def port_of(proc: Proc) -> int:
    return int(proc.argv[proc.argv.index("--port") + 1])


def wait_secantus(proc: Proc, timeout: float = 60.0) -> None:
    port = port_of(proc)
    if not wait_until(lambda: not proc.running or reachable(port), timeout, 0.1) or not proc.running:
        raise RuntimeError("SecantusDB did not start:\n" + "\n".join(proc.lines[-30:]))
