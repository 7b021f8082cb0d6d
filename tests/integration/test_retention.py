"""Nothing grows without bound: handled-event markers and refresh tokens and families expire (a TTL index, or the
services' own sweep with ``MICROSHOP_MONGO_EXPIRY=sweep``, as everything on SecantusDB runs), read alerts are
purged, sent outbox records too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from alerts.inbox import ADMINS, ALERTS, purge_read
from customers.models import REFRESH_FAMILIES_TTL_INDEX, REFRESH_TOKENS_TTL_INDEX, ensure_refresh_retention
from devtools.secantus import SERVICE_ENV
from devtools.shop import LocalShop
from shopkit.app import Uses, connect
from shopkit.contracts.events import StockLow
from shopkit.messaging.bus import Delivery, EventBus, create_broker
from shopkit.mongo import HANDLED_EVENTS, MARKERS_TTL_INDEX, Retention, ensure_marker_retention, utcnow
from shopkit.settings import ServiceSettings

Db = tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]


@pytest.fixture
async def database(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client, client[f"r{uuid.uuid4().hex[:10]}"]
    await client.close()


async def ttl_of(db: AsyncDatabase[Any]) -> Any:
    info = await db[HANDLED_EVENTS].index_information()
    return info[MARKERS_TTL_INDEX].get("expireAfterSeconds")


async def ttl_indexes(db: AsyncDatabase[Any]) -> dict[str, Any]:
    """Every TTL index of the database, by collection and name."""
    found = {}
    for collection in await db.list_collection_names():
        for name, index in (await db[collection].index_information()).items():
            if "expireAfterSeconds" in index:
                found[f"{collection}.{name}"] = index
    return found


async def test_a_consuming_service_gives_its_handled_event_markers_a_ttl(mongo_url: str, namespace: str) -> None:
    name = f"r{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(service_name=name, namespace=namespace, mongo_url=mongo_url,  # type: ignore[arg-type]
                               handled_event_retention_seconds=3 * 86400)
    bus = EventBus(settings, create_broker(settings))

    async def handle(batch: list[Delivery[StockLow]]) -> None:
        return None

    bus.subscribe(StockLow, handle)
    async with connect(settings, Uses(events=True), bus) as res:
        assert await ttl_of(res.db) == 3 * 86400
        await res.client.drop_database(res.db.name)


async def test_changing_the_marker_retention_updates_the_ttl_index(database: Db) -> None:
    _, db = database
    await ensure_marker_retention(Retention(db), 7 * 86400)
    assert await ttl_of(db) == 7 * 86400
    await ensure_marker_retention(Retention(db), 86400)  # a new setting on the next start: replaced, no conflict
    assert await ttl_of(db) == 86400


async def test_the_sweep_deletes_expired_markers_and_refresh_tokens_and_keeps_fresh_ones(database: Db) -> None:
    _, db = database
    retention = Retention(db, "sweep", sweep_seconds=3600)  # its own task would wait an hour: swept by hand here
    try:
        await ensure_marker_retention(retention, 86400)
        await ensure_refresh_retention(retention, 30 * 86400)
        now = utcnow()
        await db[HANDLED_EVENTS].insert_many([{"_id": "old", "at": now - timedelta(days=2)},
                                              {"_id": "fresh", "at": now - timedelta(hours=23)}])
        for collection in ("refresh_tokens", "refresh_families"):
            await db[collection].insert_many([{"_id": "expired", "expires_at": now - timedelta(seconds=1)},
                                              {"_id": "valid", "expires_at": now + timedelta(days=1)}])
        assert await retention.sweep() == 3
        assert await db[HANDLED_EVENTS].distinct("_id") == ["fresh"]
        assert await db["refresh_tokens"].distinct("_id") == ["valid"]
        assert await db["refresh_families"].distinct("_id") == ["valid"]
        # No TTL index anywhere, and each sweep finds its documents by a plain index on the field.
        assert await ttl_indexes(db) == {}
        assert (await db[HANDLED_EVENTS].index_information())[MARKERS_TTL_INDEX]["key"] == [("at", 1)]
        assert (await db["refresh_tokens"].index_information())[REFRESH_TOKENS_TTL_INDEX]["key"] == [("expires_at", 1)]
    finally:
        await retention.stop()


async def test_switching_to_the_sweep_drops_the_ttl_index_and_back_makes_it_again(database: Db) -> None:
    _, db = database
    await ensure_marker_retention(Retention(db, "ttl-index"), 86400)
    assert await ttl_of(db) == 86400
    sweeping = Retention(db, "sweep")
    await ensure_marker_retention(sweeping, 86400)
    await sweeping.stop()
    assert await ttl_of(db) is None and await ttl_indexes(db) == {}
    await ensure_marker_retention(Retention(db, "ttl-index"), 86400)
    assert await ttl_of(db) == 86400


async def test_a_service_set_to_sweep_deletes_expired_markers_itself(mongo_url: str, namespace: str) -> None:
    name = f"r{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(service_name=name, namespace=namespace, mongo_url=mongo_url,  # type: ignore[arg-type]
                               handled_event_retention_seconds=3600, mongo_expiry="sweep",
                               mongo_expiry_sweep_seconds=1)
    bus = EventBus(settings, create_broker(settings))

    async def handle(batch: list[Delivery[StockLow]]) -> None:
        return None

    bus.subscribe(StockLow, handle)
    async with connect(settings, Uses(events=True), bus) as res:
        markers = res.db[HANDLED_EVENTS]
        await markers.insert_many([{"_id": "old", "at": utcnow() - timedelta(hours=2)}, {"_id": "new", "at": utcnow()}])
        for _ in range(50):  # its task sweeps every 0.8-1.2 s
            if await markers.count_documents({}) == 1:
                break
            await asyncio.sleep(0.1)
        assert await markers.distinct("_id") == ["new"]
        assert await ttl_indexes(res.db) == {}
        await res.client.drop_database(res.db.name)


async def test_read_alerts_older_than_the_retention_are_purged_and_unread_ones_kept(database: Db) -> None:
    _, db = database
    old, new = utcnow() - timedelta(days=40), utcnow() - timedelta(days=1)
    docs = {
        "old read": {"recipient": "user:1", "read": True, "created_at": old},
        "old unread": {"recipient": "user:1", "read": False, "created_at": old},
        "new read": {"recipient": "user:1", "read": True, "created_at": new},
        "old stock read by an admin": {"recipient": ADMINS, "read_by": ["a1"], "created_at": old},
        "old stock unread": {"recipient": ADMINS, "read_by": [], "created_at": old},
        "old stock never marked": {"recipient": ADMINS, "created_at": old},
    }
    await db[ALERTS].insert_many([{"_id": k, "type": "t", "message": k, **v} for k, v in docs.items()])
    assert await purge_read(db, utcnow() - timedelta(days=30)) == 2
    assert sorted([d["_id"] async for d in db[ALERTS].find({})]) == sorted(
        ["old unread", "new read", "old stock unread", "old stock never marked"])


async def test_customers_starts_with_ttl_indexes_on_the_expiry_of_refresh_tokens_and_families(database: Db) -> None:
    _, db = database
    await ensure_refresh_retention(Retention(db, "ttl-index"), 30 * 86400)  # MICROSHOP_MONGO_EXPIRY's default
    for collection, name in (("refresh_tokens", REFRESH_TOKENS_TTL_INDEX),
                             ("refresh_families", REFRESH_FAMILIES_TTL_INDEX)):
        index = (await db[collection].index_information()).get(name)
        assert index is not None, f"customers made no index {name} on {collection}"
        assert index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0, index


async def test_the_shop_on_secantusdb_sweeps_and_keeps_no_ttl_index(
        shop: LocalShop, customers_db: AsyncDatabase[Any]) -> None:
    assert shop.common_env()["MICROSHOP_MONGO_EXPIRY"] == SERVICE_ENV["MICROSHOP_MONGO_EXPIRY"] == "sweep"
    for collection, name in (("refresh_tokens", REFRESH_TOKENS_TTL_INDEX),
                             ("refresh_families", REFRESH_FAMILIES_TTL_INDEX)):
        index = (await customers_db[collection].index_information()).get(name)
        assert index is not None, f"customers made no index {name} on {collection}"
        assert index["key"] == [("expires_at", 1)] and "expireAfterSeconds" not in index, index
    assert await ttl_indexes(customers_db) == {}


async def test_refresh_families_stored_without_an_expiry_get_created_at_plus_the_max_age(database: Db) -> None:
    _, db = database
    created = (utcnow() - timedelta(days=3)).replace(microsecond=0)
    await db["refresh_families"].insert_many([
        {"_id": "legacy", "customer_id": "c", "generation": 2, "created_at": created},
        {"_id": "current", "customer_id": "c", "generation": 0, "created_at": created,
         "expires_at": created + timedelta(days=1)},
    ])
    await ensure_refresh_retention(Retention(db), 30 * 86400)
    await ensure_refresh_retention(Retention(db), 30 * 86400)  # the next start: nothing to do, no conflict
    expiry = {d["_id"]: d["expires_at"] async for d in db["refresh_families"].find({})}
    assert expiry == {"legacy": created + timedelta(days=30), "current": created + timedelta(days=1)}
