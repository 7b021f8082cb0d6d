"""Transactional outbox: events are stored with the state change, then published with confirms.

A service writes its events with :func:`add_to_outbox` inside the same transaction as the
change they describe; :class:`OutboxRelay` publishes pending records in order, a batch at a
time, and deletes them once confirmed (or, with a retention, marks them sent and purges them
later). A crash between publish and delete re-publishes: consumers dedupe on event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from shopkit import tracing
from shopkit.broker import EventBus
from shopkit.context import correlation_id_var
from shopkit.events import CloudEvent
from shopkit.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PENDING
from shopkit.tasks import cancel

log = logging.getLogger("shopkit.outbox")
OUTBOX = "outbox"


async def ensure_outbox_indexes(db: AsyncDatabase[Any]) -> None:
    await db[OUTBOX].create_index([("sent", ASCENDING), ("seq", ASCENDING)])


async def add_to_outbox(
    db: AsyncDatabase[Any], events: list[CloudEvent], session: AsyncClientSession | None
) -> None:
    if not events:
        return
    now = datetime.now(UTC)
    stamp = time.time_ns()
    docs = [
        {
            "_id": ev.id,
            # One sortable scalar (not an array: Mongo sorts arrays by their smallest element):
            # commit time, then position within the transaction.
            "seq": f"{stamp:020d}.{i:06d}",
            "sent": False,
            "created_at": now,
            "event": ev.model_dump(mode="json"),
        }
        for i, ev in enumerate(events)
    ]
    await db[OUTBOX].insert_many(docs, session=session, ordered=True)


class OutboxRelay:
    """Publishes unsent outbox records in creation order, a batch at a time; woken after commits, else polls."""

    def __init__(self, db: AsyncDatabase[Any], bus: EventBus, *, poll_seconds: float = 1.0,
                 batch: int = 256, linger_seconds: float = 0.0, retention_seconds: float = 0.0) -> None:
        self.db = db
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.linger = linger_seconds
        self.retention = timedelta(seconds=retention_seconds)
        self._purged_at = datetime.now(UTC)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Call after committing outbox records so they go out now rather than at the next poll."""
        self._wake.set()

    async def pending(self) -> int:
        return await self.db[OUTBOX].count_documents({"sent": False})

    async def drain_once(self) -> int:
        """Publish one batch; returns how many records were published.

        The batch is published pipelined: every record is handed to the channel in order (the
        channel writes them in that order) and the publisher confirms are awaited together, so a
        batch costs about one round trip instead of one per record. What was confirmed is marked
        sent with one write.
        """
        docs = await self.db[OUTBOX].find({"sent": False}).sort("seq", ASCENDING).limit(self.batch).to_list(
            self.batch)
        if not docs:
            OUTBOX_PENDING.set(0)
            OUTBOX_OLDEST_AGE.set(0)
            await self._purge_sent()
            return 0
        events = [CloudEvent.model_validate(doc["event"]) for doc in docs]
        results = await asyncio.gather(*(self._publish(event) for event in events), return_exceptions=True)
        sent = [doc["_id"] for doc, result in zip(docs, results, strict=True) if result is None]
        await self._observe_backlog(docs, results)
        # One write settles what was confirmed, also when another publish failed; a crash before it
        # re-publishes the batch, which consumers dedupe by event id. Without a retention the records
        # are deleted at once (the broker has them): a delete is the cheapest write there is.
        if sent and self.retention:
            await self.db[OUTBOX].update_many(
                {"_id": {"$in": sent}, "sent": False}, {"$set": {"sent": True, "sent_at": datetime.now(UTC)}}
            )
        elif sent:
            await self.db[OUTBOX].delete_many({"_id": {"$in": sent}})
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        await self._purge_sent()
        return len(sent)

    async def _observe_backlog(self, docs: list[dict[str, Any]], results: list[Any]) -> None:
        """The backlog gauges, from what this drain read: no query while the relay keeps up.

        Behind (a full batch was read), the backlog is counted (an indexed count) once per drain.
        """
        unsent = [doc for doc, result in zip(docs, results, strict=True) if result is not None]
        full = len(docs) >= self.batch
        # (The count still sees this batch's confirmed records: they are settled after it.)
        OUTBOX_PENDING.set(max(await self.pending() - (len(docs) - len(unsent)), 0) if full else len(unsent))
        # Unsent records are the oldest; after a full batch the next ones are younger than its last.
        oldest = unsent[0] if unsent else docs[-1] if full else None
        created = oldest.get("created_at") if oldest else None
        if isinstance(created, datetime):
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            OUTBOX_OLDEST_AGE.set(max((datetime.now(UTC) - created).total_seconds(), 0.0))
        else:
            OUTBOX_OLDEST_AGE.set(0)

    async def _publish(self, event: CloudEvent) -> None:
        token = correlation_id_var.set(event.correlationid)
        try:
            if event.traceparent and tracing.tracing_enabled():
                # The publish span (and the AMQP traceparent header) continue the trace that created the event.
                with tracing.within(event.traceparent):
                    await self.bus.publish(event)
            else:
                await self.bus.publish(event)
        finally:
            correlation_id_var.reset(token)

    async def _purge_sent(self) -> None:
        """Delete records sent longer than ``retention`` ago, at most once a minute, so the outbox stays small."""
        if not self.retention:
            return
        now = datetime.now(UTC)
        if (now - self._purged_at).total_seconds() < 60:
            return
        self._purged_at = now
        await self.db[OUTBOX].delete_many({"sent": True, "sent_at": {"$lt": now - self.retention}})

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
                if self.linger:
                    await asyncio.sleep(self.linger)  # woken by a commit: let the next ones join the batch

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        await cancel(self._task)
