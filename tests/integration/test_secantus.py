"""SecantusDB as devtools/secantus.py starts it (``SERVER_FLAGS``): no oplog, transactions that still hold.

By default SecantusDB writes every change to an oplog for change streams, which the shop never opens; the
oplog grew to 100,000 entries and was then pruned inside writes, so a long run slowed down as it went
(docs/saga.md, "Steady over time"). ``--standalone`` writes none. Real MongoDB refuses transactions on a
standalone server; SecantusDB does not, and the shop's writes rely on them: these tests hold it to that.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from devtools.secantus import SERVER_FLAGS
from shopkit.mongo import create_client, in_transaction
from shopkit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
Database = tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]


async def test_writes_leave_no_oplog_behind(database: Database) -> None:
    client, db = database
    await db["things"].insert_many([{"n": i} for i in range(300)])
    await db["things"].update_many({}, {"$inc": {"n": 1}})
    await db["things"].delete_many({"n": {"$lte": 100}})
    assert await db["things"].count_documents({}) == 200
    # With the oplog on, each of those 600 changes is an entry here.
    assert await client["local"]["oplog.rs"].count_documents({}) == 0


async def test_transactions_commit_together_and_roll_back_together(database: Database) -> None:
    client, db = database

    async def both(session: AsyncClientSession) -> None:
        await db["orders"].insert_one({"_id": "o1"}, session=session)
        await db["outbox"].insert_one({"_id": "e1", "order": "o1"}, session=session)

    await in_transaction(client, both)

    async def fails_halfway(session: AsyncClientSession) -> None:
        await db["orders"].insert_one({"_id": "o2"}, session=session)
        await db["outbox"].insert_one({"_id": "e2", "order": "o2"}, session=session)
        raise RuntimeError("the work fails after its writes")

    with pytest.raises(RuntimeError, match="after its writes"):
        await in_transaction(client, fails_halfway)
    assert await db["orders"].distinct("_id") == ["o1"]
    assert await db["outbox"].distinct("_id") == ["e1"]


def test_every_secantusdb_the_repository_starts_runs_without_an_oplog() -> None:
    assert "--standalone" in SERVER_FLAGS
    host = yaml.safe_load((ROOT / "compose.host.yaml").read_text())
    assert set(SERVER_FLAGS) <= set(host["services"]["mongodb"]["command"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index("FROM runtime AS secantus"):]
    cmd = re.search(r"^CMD (\[.*\])$", stage, re.M)
    assert cmd is not None
    assert set(SERVER_FLAGS) <= set(yaml.safe_load(cmd.group(1)))


async def test_a_slow_statement_is_logged_with_its_command_and_collection_and_nothing_of_its_documents(
        mongo_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # A threshold every statement passes stands in for a slow one: the log line is what is checked.
    settings = ServiceSettings(service_name="slowtest", mongo_url=SecretStr(mongo_url), mongo_slow_statement_ms=0.001)
    client = create_client(settings)
    quiet = create_client(settings.model_copy(update={"mongo_slow_statement_ms": 0}))  # 0: none logged
    try:
        with caplog.at_level(logging.WARNING, logger="shopkit.mongo"):
            await client["slowdb"]["things"].insert_one({"secret": "s3cr3t-value"})
            await quiet["slowdb"]["things"].insert_one({"secret": "s3cr3t-value"})
        lines = [r.getMessage() for r in caplog.records if "slow database statement" in r.getMessage()]
        assert len(lines) == 1, lines
        assert re.match(r"slow database statement: insert on slowdb\.things took \d+ ms \(sent \d\d:\d\d:\d\d\.\d{3}\)",
                        lines[0]), lines
        assert "s3cr3t" not in caplog.text
    finally:
        await client.close()
        await quiet.close()


def _positioned(cursors: dict[Any, Any]) -> list[Any]:
    """The cached WiredTiger cursors that still hold a position (and so a hazard pointer on a page)."""
    def holds(cursor: Any) -> bool:
        try:
            cursor.get_key()  # raises on a cursor without a position
        except Exception:
            return False
        return True

    return [key for key, cursor in cursors.items() if holds(cursor)]


def test_a_transaction_holds_no_page_between_its_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    # SecantusDB's own storage engine, in this process (devtools/secantus_server.py says why it matters: a
    # positioned cursor blocks WiredTiger's split of its page, and the whole server stalls until it moves).
    from secantus.storage import Storage

    from devtools.secantus_server import install

    # install() patches the class for this process only (the servers are processes of their own): undone after.
    monkeypatch.setattr(Storage, "use_user_transaction", Storage.use_user_transaction)
    monkeypatch.setattr(Storage, "_microshop_cursors_released", False, raising=False)

    def statement_in_a_transaction(storage: Storage) -> dict[Any, Any]:
        handle = storage.begin_user_transaction()
        with storage.use_user_transaction(handle):
            storage.insert("txndb", "things", [{"_id": 100, "n": 100}])
            assert [doc["n"] for doc in storage.find_matching("txndb", "things", {"_id": 7})] == [7]
        cursors = dict(handle.cursors)
        held = _positioned(cursors)
        storage.abort_user_transaction(handle)
        return {"cached": list(cursors), "held": held}

    before = Storage(":memory:")
    after = None
    try:
        before.insert("txndb", "things", [{"_id": i, "n": i} for i in range(50)])
        as_shipped = statement_in_a_transaction(before)
        assert as_shipped["held"], "SecantusDB left no cursor positioned: the launcher's fix may be unneeded now"
        install()
        install()  # idempotent: one reset per statement, not two wrappers
        after = Storage(":memory:")
        after.insert("txndb", "things", [{"_id": i, "n": i} for i in range(50)])
        fixed = statement_in_a_transaction(after)
        assert fixed["cached"], "the statement used cached cursors"
        assert fixed["held"] == []
    finally:
        before.close()
        if after is not None:
            after.close()


def test_the_repository_starts_secantusdb_through_the_launcher() -> None:
    from devtools.secantus import LAUNCHER, secantus_proc

    assert secantus_proc(port=1).argv[1:3] == ["-m", LAUNCHER]
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index("FROM runtime AS secantus"):]
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", stage, re.M)
    assert entry is not None
    assert yaml.safe_load(entry.group(1))[:2] == ["python", "/opt/secantus_server.py"]


def test_the_launcher_tunes_the_servers_collector_as_the_services_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from devtools import secantus_server
    from shopkit.serve import OLDER_GENERATIONS_EVERY

    started: list[tuple[int, int, int]] = []
    monkeypatch.setattr("sys.argv", ["secantus_server"])  # main() names the program in it
    monkeypatch.setattr("secantus.cli.main", lambda: started.append(gc.get_threshold()) or 0)
    before = gc.get_threshold()
    try:
        monkeypatch.setenv(secantus_server.GC_ENV, "0")  # 0: Python's defaults, nothing frozen
        assert secantus_server.main() == 0
        assert started == [before] and gc.get_freeze_count() == 0
        monkeypatch.delenv(secantus_server.GC_ENV)
        assert secantus_server.main() == 0
        assert started[-1] == (secantus_server.GC_YOUNG_THRESHOLD, OLDER_GENERATIONS_EVERY, OLDER_GENERATIONS_EVERY)
        # The same default as the services' (the launcher cannot import it: it is copied alone into its image).
        assert ServiceSettings.model_fields["gc_young_threshold"].default == secantus_server.GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
