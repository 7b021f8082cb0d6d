"""Transactional outbox: events are stored with the state change, then published with confirms.

A service writes its events with :func:`add_to_outbox` inside the same transaction as the
change they describe; :class:`OutboxRelay` publishes pending records in order and marks
them sent. A crash between publish and mark re-publishes: consumers dedupe on event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClientSession, AsyncIOMotorDatabase
from pymongo import ASCENDING

from shopkit.broker import EventBus
from shopkit.context import correlation_id_var
from shopkit.events import CloudEvent

log = logging.getLogger("shopkit.outbox")
OUTBOX = "outbox"


async def ensure_outbox_indexes(db: AsyncIOMotorDatabase[Any]) -> None:
    await db[OUTBOX].create_index([("sent", ASCENDING), ("seq", ASCENDING)])


async def add_to_outbox(
    db: AsyncIOMotorDatabase[Any], events: list[CloudEvent], session: AsyncIOMotorClientSession | None
) -> None:
    if not events:
        return
    now = datetime.now(UTC)
    docs = [
        {
            "_id": ev.id,
            "seq": (now.timestamp(), i),
            "sent": False,
            "created_at": now,
            "event": ev.model_dump(mode="json"),
        }
        for i, ev in enumerate(events)
    ]
    await db[OUTBOX].insert_many(docs, session=session, ordered=True)


class OutboxRelay:
    """Publishes unsent outbox records in creation order; woken after commits, polls as a fallback."""

    def __init__(self, db: AsyncIOMotorDatabase[Any], bus: EventBus, *, poll_seconds: float = 1.0,
                 batch: int = 100) -> None:
        self.db = db
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Call after committing outbox records so they go out now rather than at the next poll."""
        self._wake.set()

    async def pending(self) -> int:
        return await self.db[OUTBOX].count_documents({"sent": False})

    async def drain_once(self) -> int:
        """Publish one batch; returns how many records were published."""
        cursor = self.db[OUTBOX].find({"sent": False}).sort("seq", ASCENDING).limit(self.batch)
        published = 0
        async for doc in cursor:
            event = CloudEvent.model_validate(doc["event"])
            token = correlation_id_var.set(event.correlationid)
            try:
                await self.bus.publish(event)
            finally:
                correlation_id_var.reset(token)
            await self.db[OUTBOX].update_one(
                {"_id": doc["_id"], "sent": False}, {"$set": {"sent": True, "sent_at": datetime.now(UTC)}}
            )
            published += 1
        return published

    async def run(self) -> None:
        backoff = self.poll_seconds
        while True:
            # Cleared before draining: a notify() that lands mid-drain makes the wait below return at once.
            self._wake.clear()
            try:
                while await self.drain_once():
                    pass
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Broker or database away: keep the records, try again with backoff.
                log.warning("outbox relay could not publish (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
