"""Start SecantusDB with one fix: a transaction holds no WiredTiger page between its statements.

``python -m devtools.secantus_server <secantusd-py arguments>`` is what ``devtools.secantus`` runs (``make dev``,
every test fixture, the benchmarks). It is SecantusDB's own command line (``secantus.cli.main``) after
:func:`install`. Development only: the shop's images and charts run real MongoDB and never this module.

**What it fixes.** SecantusDB stores every collection of every database in a few shared WiredTiger tables
(documents by collection-hash shard, one table for all index entries, one for record order). A multi-document
transaction has a WiredTiger session of its own with a cache of cursors, and SecantusDB resets a cached cursor
only when the next statement reuses it: between two statements of a transaction (while the client thinks,
or waits for the network) every cursor the last statement used stays positioned, and a positioned cursor
holds a *hazard pointer* on its page. WiredTiger splits a page that has grown past its in-memory limit only
when no hazard pointer is on it. Under load some transaction almost always has a cursor parked on the page
where new records land (the end of an outbox's index, say), so the split waits; every thread that touches the
page tries the split, fails, and backs off. The whole server stalls for seconds, for every database: that was
the 1-5 s stall of the benchmark's load phase (docs/saga.md, "Stalls under load"). mongod releases its
cursors after every operation, so real MongoDB does not have this.

**The fix.** When a statement of a transaction ends, each of the transaction's cached cursors is reset.
A reset releases the cursor's position (and its hazard pointer), not the transaction's snapshot, and
SecantusDB resets a cached cursor before every reuse anyway, so nothing may rely on its position across
statements (query results are materialised into the server's cursor registry, not read from these cursors).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_INSTALLED = "_microshop_cursors_released"


def install() -> None:
    """Reset a transaction's cached cursors at the end of each of its statements (idempotent)."""
    from secantus.storage import Storage

    if getattr(Storage, _INSTALLED, False):
        return
    enter = Storage.use_user_transaction

    @contextlib.contextmanager
    def use_user_transaction(self: Storage, handle: Any) -> Iterator[None]:
        try:
            with enter(self, handle):
                yield
        finally:
            if not handle.closed:
                for cursor in handle.cursors.values():
                    with contextlib.suppress(Exception):  # a cursor the statement already closed
                        cursor.reset()

    Storage.use_user_transaction = use_user_transaction  # type: ignore[method-assign]
    setattr(Storage, _INSTALLED, True)


def main() -> int:
    install()
    from secantus.cli import main as secantus_main

    sys.argv[0] = "secantusd-py"
    return int(secantus_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
