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
from pymongo.errors import DuplicateKeyError

from shopkit.settings import ServiceSettings

log = logging.getLogger("shopkit.mongo")
T = TypeVar("T")

HANDLED_EVENTS = "handled_events"


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


class AlreadyHandled(Exception):
    """The event was handled before: its id is already recorded."""


async def mark_handled(
    db: AsyncIOMotorDatabase[Any], consumer: str, event_id: str, session: AsyncIOMotorClientSession
) -> None:
    """Record ``event_id`` as handled by ``consumer`` inside the caller's transaction.

    The unique ``_id`` makes a second delivery fail here, so the effect written in the
    same transaction is never applied twice.
    """
    try:
        await db[HANDLED_EVENTS].insert_one({"_id": f"{consumer}:{event_id}"}, session=session)
    except DuplicateKeyError as exc:
        raise AlreadyHandled(event_id) from exc


async def handle_once(
    client: AsyncIOMotorClient[Any],
    db: AsyncIOMotorDatabase[Any],
    consumer: str,
    event_id: str,
    effect: Callable[[AsyncIOMotorClientSession], Awaitable[T]],
) -> tuple[bool, T | None]:
    """Apply ``effect`` and record the event id in one transaction.

    Returns ``(True, result)`` when applied now, ``(False, None)`` for a duplicate delivery.
    """

    async def work(session: AsyncIOMotorClientSession) -> T:
        await mark_handled(db, consumer, event_id, session)
        return await effect(session)

    try:
        return True, await in_transaction(client, work)
    except AlreadyHandled:
        log.info("event %s already handled by %s; skipped", event_id, consumer)
        return False, None


async def apply_batch_once(
    client: AsyncIOMotorClient[Any],
    db: AsyncIOMotorDatabase[Any],
    consumer: str,
    event_ids: Sequence[str],
    effect: Callable[[AsyncIOMotorClientSession, list[int]], Awaitable[T]],
) -> tuple[list[bool], T | None]:
    """Apply ``effect`` to the events of a batch not handled before, and record them, in one transaction.

    ``effect`` gets the positions (in ``event_ids``) of the events to apply: those without a
    marker, each id once (a redelivery within the same batch counts as a duplicate). Returns
    per event whether it was applied now, and what ``effect`` returned (``None`` when every
    event was a duplicate and ``effect`` did not run). Markers are written with one statement.
    """
    keys = [f"{consumer}:{event_id}" for event_id in event_ids]

    async def work(session: AsyncIOMotorClientSession) -> tuple[list[bool], T | None]:
        seen = {doc["_id"] async for doc in db[HANDLED_EVENTS].find({"_id": {"$in": keys}}, {"_id": 1},
                                                                        session=session)}
        fresh: list[int] = []
        for i, key in enumerate(keys):
            if key not in seen:
                seen.add(key)
                fresh.append(i)
        if not fresh:
            return [False] * len(keys), None
        now = utcnow()
        await db[HANDLED_EVENTS].insert_many([{"_id": keys[i], "at": now} for i in fresh], ordered=False,
                                             session=session)
        result = await effect(session, fresh)
        applied = [False] * len(keys)
        for i in fresh:
            applied[i] = True
        return applied, result

    return await in_transaction(client, work)


def utcnow() -> datetime:
    """Timezone-aware now, as every stored timestamp is."""
    return datetime.now(UTC)


def parse_object_id(value: str) -> ObjectId | None:
    """The ObjectId an id string names, or None for anything that is not one (a caller's 404)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None
