"""Nothing grows without bound: handled-event markers and refresh tokens and families expire (TTL), read alerts
are purged, sent outbox records too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from alerts.inbox import ADMINS, ALERTS, purge_read
from customers.models import REFRESH_FAMILIES_TTL_INDEX, REFRESH_TOKENS_TTL_INDEX, ensure_refresh_retention
from devtools.shop import LocalShop
from shopkit.app import Uses, connect
from shopkit.contracts.events import StockLow
from shopkit.messaging.bus import Delivery, EventBus, create_broker
from shopkit.mongo import HANDLED_EVENTS, MARKERS_TTL_INDEX, ensure_marker_retention, utcnow
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
    await ensure_marker_retention(db, 7 * 86400)
    assert await ttl_of(db) == 7 * 86400
    await ensure_marker_retention(db, 86400)  # a new setting on the next start: the index is replaced, not a conflict
    assert await ttl_of(db) == 86400


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


async def test_customers_starts_with_ttl_indexes_on_the_expiry_of_refresh_tokens_and_families(
        shop: LocalShop, customers_db: AsyncDatabase[Any]) -> None:
    for collection, name in (("refresh_tokens", REFRESH_TOKENS_TTL_INDEX),
                             ("refresh_families", REFRESH_FAMILIES_TTL_INDEX)):
        index = (await customers_db[collection].index_information()).get(name)
        assert index is not None, f"customers made no index {name} on {collection}"
        assert index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0, index


async def test_refresh_families_stored_without_an_expiry_get_created_at_plus_the_max_age(database: Db) -> None:
    _, db = database
    created = (utcnow() - timedelta(days=3)).replace(microsecond=0)
    await db["refresh_families"].insert_many([
        {"_id": "legacy", "customer_id": "c", "generation": 2, "created_at": created},
        {"_id": "current", "customer_id": "c", "generation": 0, "created_at": created,
         "expires_at": created + timedelta(days=1)},
    ])
    await ensure_refresh_retention(db, 30 * 86400)
    await ensure_refresh_retention(db, 30 * 86400)  # the next start: nothing to do, no conflict
    expiry = {d["_id"]: d["expires_at"] async for d in db["refresh_families"].find({})}
    assert expiry == {"legacy": created + timedelta(days=30), "current": created + timedelta(days=1)}
