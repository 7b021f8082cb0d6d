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

**And the collector** is tuned as the services tune theirs (``shopkit.serve.tune_gc``; this file is copied
alone into the ``secantus`` image, so it cannot import the kit): what is loaded is frozen and the young
generation collected every 200,000 allocations (``MICROSHOP_SECANTUS_GC_YOUNG_THRESHOLD``; 0 keeps Python's
defaults). docs/saga.md, "Garbage collection", has what it measured.
"""

from __future__ import annotations

import contextlib
import gc
import os
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


# Python's garbage collector in the server (as ``shopkit.serve.tune_gc`` does in the services): what is loaded is
# frozen and a young collection runs every this many allocations instead of 700, the older generations every 20
# of the younger. 0 keeps Python's defaults.
GC_ENV = "MICROSHOP_SECANTUS_GC_YOUNG_THRESHOLD"
GC_YOUNG_THRESHOLD = 200_000
GC_OLDER_EVERY = 20


def tune_gc(young_threshold: int) -> None:
    """Freeze what is loaded and collect the young generation every ``young_threshold`` allocations (0: no change)."""
    if not young_threshold:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, GC_OLDER_EVERY, GC_OLDER_EVERY)


def main() -> int:
    install()
    from secantus.cli import main as secantus_main

    tune_gc(int(os.environ.get(GC_ENV, GC_YOUNG_THRESHOLD)))

    sys.argv[0] = "secantusd-py"
    return int(secantus_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
