"""MongoDB wiring: one client per process, one database per service, odmantic on top."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from bson import ObjectId
from bson.errors import InvalidId
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorDatabase
from odmantic import AIOEngine
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.mongo")
T = TypeVar("T")

HANDLED_EVENTS = "handled_events"
DUPLICATE_KEY = 11000


def create_client(settings: ServiceSettings) -> AsyncIOMotorClient[Any]:
    return AsyncIOMotorClient(
        settings.mongo_url.get_secret_value(),
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        tz_aware=True,
        appname=settings.service_name,
    )


def create_engine(client: AsyncIOMotorClient[Any], settings: ServiceSettings) -> AIOEngine:
    return AIOEngine(client=client, database=settings.database_name)


async def ping(client: AsyncIOMotorClient[Any]) -> None:
    await client.admin.command("ping")


async def in_transaction(
    client: AsyncIOMotorClient[Any], work: Callable[[AsyncIOMotorClientSession], Awaitable[T]]
) -> T:
    """Run ``work`` in a transaction; transient errors (e.g. WriteConflict) are retried by the driver."""
    async with await client.start_session() as session:
        return await session.with_transaction(work)  # type: ignore[arg-type,no-any-return]


async def apply_batch_once(
    client: AsyncIOMotorClient[Any],
    db: AsyncIOMotorDatabase[Any],
    markers: Sequence[str],
    effect: Callable[[AsyncIOMotorClientSession, list[int]], Awaitable[T]],
) -> tuple[list[bool], T | None]:
    """Apply ``effect`` to the events of a batch not handled before, and record them, in one transaction.

    ``markers`` are the events' handled-event ids (``Delivery.marker``: ``<consumer>:<event id>``).
    ``effect`` gets the positions of the events to apply: those without a marker, each marker
    once (a redelivery within the same batch counts as a duplicate). Returns per event whether it
    was applied now, and what ``effect`` returned (``None`` when every event was a duplicate).

    Markers are written with one statement, optimistically: redeliveries are rare, so the first
    attempt does not look markers up; a duplicate key aborts it, and a second attempt reads the
    existing markers first (one more statement) and applies the rest.
    """
    unique: list[int] = []
    firsts: set[str] = set()
    for i, key in enumerate(markers):
        if key not in firsts:
            firsts.add(key)
            unique.append(i)

    def attempt(look_up: bool) -> Callable[[AsyncIOMotorClientSession], Awaitable[tuple[list[bool], T | None]]]:
        async def work(session: AsyncIOMotorClientSession) -> tuple[list[bool], T | None]:
            fresh = unique
            if look_up:
                seen = {doc["_id"] async for doc in db[HANDLED_EVENTS].find(
                    {"_id": {"$in": [markers[i] for i in unique]}}, {"_id": 1}, session=session)}
                fresh = [i for i in unique if markers[i] not in seen]
            if not fresh:
                return [False] * len(markers), None
            now = utcnow()
            await db[HANDLED_EVENTS].insert_many([{"_id": markers[i], "at": now} for i in fresh], ordered=True,
                                                 session=session)
            result = await effect(session, fresh)
            applied = [False] * len(markers)
            for i in fresh:
                applied[i] = True
            return applied, result

        return work

    try:
        return await in_transaction(client, attempt(look_up=False))
    except (DuplicateKeyError, BulkWriteError) as exc:
        if isinstance(exc, BulkWriteError) and not all(
                e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
            raise
        return await in_transaction(client, attempt(look_up=True))


def database_user(service: str, database: str | None = None) -> dict[str, Any]:
    """The MongoDB user a service connects as: ``readWrite`` on its own database and nothing else.

    The chart creates these (``createUser``) and gives each service its own credentials; every
    statement a service runs (transactions, indexes, TTL indexes included) needs no more.
    """
    db = database or service
    return {"user": service, "db": db, "roles": [{"role": "readWrite", "db": db}]}


MARKERS_TTL_INDEX = "handled_events_ttl"
INDEX_OPTIONS_CONFLICT = (85, 86)


async def ensure_ttl_index(db: AsyncIOMotorDatabase[Any], collection: str, field: str, seconds: float,
                           name: str) -> None:
    """A TTL index on ``field``: MongoDB deletes a document ``seconds`` after that time.

    A changed ``seconds`` replaces the index (drop, then create) rather than ``collMod``: a service's
    database user has ``readWrite`` on its own database only, which may drop and create indexes but
    not run ``collMod``. Between the two nothing expires, which only delays a purge.
    """
    expire = max(int(seconds), 0)
    try:
        await db[collection].create_index(field, name=name, expireAfterSeconds=expire)
    except OperationFailure as exc:
        if exc.code not in INDEX_OPTIONS_CONFLICT:
            raise
        await db[collection].drop_index(name)
        await db[collection].create_index(field, name=name, expireAfterSeconds=expire)


async def ensure_marker_retention(db: AsyncIOMotorDatabase[Any], seconds: float) -> None:
    """Handled-event markers expire ``seconds`` after they were written (``MICROSHOP_HANDLED_EVENT_RETENTION_SECONDS``).

    A redelivery older than that would be applied again, so the retention must be far longer than any
    event stays in flight (RabbitMQ redelivers within seconds; a dead letter is replayed within days).
    """
    await ensure_ttl_index(db, HANDLED_EVENTS, "at", seconds, MARKERS_TTL_INDEX)


def utcnow() -> datetime:
    """Timezone-aware now, as every stored timestamp is."""
    return datetime.now(UTC)


def parse_object_id(value: str) -> ObjectId | None:
    """The ObjectId an id string names, or None for anything that is not one (a caller's 404)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None
