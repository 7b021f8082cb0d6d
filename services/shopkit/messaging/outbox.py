"""Transactional outbox: events are stored with the state change, then published with confirms.

:func:`add_to_outbox` writes an event in the transaction of the change it describes; an
:class:`OutboxRelay` publishes pending records in order and deletes them once confirmed (consumers
dedupe a re-publish by event id). Every replica runs a relay; each claims a batch with a short lease
before publishing it, so a record is published by one of them and a dead relay blocks nothing for
longer than the lease (a relay that publishes after losing its claim counts it in
``microshop_outbox_lost_claims``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from shopkit import tracing
from shopkit.context import correlation_id_var
from shopkit.events import CloudEvent
from shopkit.messaging.bus import EventBus
from shopkit.metrics import OUTBOX_LOST_CLAIMS, OUTBOX_OLDEST_AGE, OUTBOX_PENDING, OUTBOX_TAKEOVERS
from shopkit.tasks import cancel

log = logging.getLogger("shopkit.outbox")
OUTBOX = "outbox"
STOP_SECONDS = 5.0  # the longest a stopping relay spends on its last round


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


def _free(now: datetime) -> dict[str, Any]:
    """Unsent records no relay holds: never claimed, released, or claimed by a relay whose lease ran out."""
    return {"sent": False, "lease_until": {"$not": {"$gte": now}}}


@dataclass
class Claim:
    """A batch of records this relay holds until ``expires``; ``full``: the batch limit was reached, more may wait."""

    token: str
    expires: datetime
    docs: list[dict[str, Any]] = field(default_factory=list)
    full: bool = False


class OutboxRelay:
    """Publishes unsent outbox records in creation order, a batch at a time; woken after commits, else polls.

    Relays of several replicas share the work through claims (module docstring): each record is
    published by the relay that claimed it.
    """

    def __init__(self, db: AsyncDatabase[Any], bus: EventBus, *, poll_seconds: float = 1.0,
                 batch: int = 256, retention_seconds: float = 0.0, lease_seconds: float = 10.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.retention = timedelta(seconds=retention_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        self._clock = clock or (lambda: datetime.now(UTC))  # leases are compared across replicas' clocks
        # Readable in the records it claims (which pod, which process), unique per relay.
        self.id = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._rounds = 0
        self.published = 0  # records this relay published
        self._purged_at = datetime.now(UTC)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()

    def notify(self) -> None:
        """Call after committing outbox records so they go out now rather than at the next poll."""
        self._wake.set()

    async def pending(self) -> int:
        return await self.db[OUTBOX].count_documents({"sent": False})

    async def drain_once(self) -> int:
        """Claim one batch and publish it; returns how many records were published."""
        return (await self._drain())[0]

    async def _drain(self) -> tuple[int, bool]:
        """One round: (records published, whether more may be waiting)."""
        claim = await self.claim()
        if not claim.docs and not claim.full:
            OUTBOX_PENDING.set(0)
            OUTBOX_OLDEST_AGE.set(0)
            await self._purge_sent()
            return 0, False
        return await self.publish(claim), claim.full

    async def claim(self) -> Claim:
        """Take the oldest free records, up to ``batch``, for this relay until the lease expires.

        The candidates are read whole, then claimed with one conditional write (only records that are
        still free match, so two relays never both get one); when the write got fewer than it was
        given, another relay was quicker and this relay reads back which ones are its own.
        """
        now = self._clock()
        self._rounds += 1
        claim = Claim(f"{self.id}/{self._rounds}", now + self.lease)
        docs = await self.db[OUTBOX].find(_free(now)).sort("seq", ASCENDING).limit(self.batch).to_list(self.batch)
        claim.full = len(docs) >= self.batch
        if not docs:
            return claim
        ids = [doc["_id"] for doc in docs]
        got = await self.db[OUTBOX].update_many(
            {"_id": {"$in": ids}, **_free(now)}, {"$set": {"claim": claim.token, "lease_until": claim.expires}})
        if got.modified_count < len(docs):
            mine = {doc["_id"] for doc in await self.db[OUTBOX].find(
                {"_id": {"$in": ids}, "claim": claim.token}, {"_id": 1}).to_list(None)}
            docs = [doc for doc in docs if doc["_id"] in mine]
        # A record that carried a claim was held by a relay whose lease ran out (it died, or stalled):
        # it may have published some of them already.
        taken_over = [doc for doc in docs if doc.get("claim")]
        if taken_over:
            OUTBOX_TAKEOVERS.inc(len(taken_over))
            log.warning("outbox relay took over %d records whose lease had expired (held by %s)", len(taken_over),
                        ", ".join(sorted({str(doc["claim"]) for doc in taken_over})))
        claim.docs = docs
        return claim

    async def publish(self, claim: Claim) -> int:
        """Publish what ``claim`` holds; returns how many records were published.

        The batch is published pipelined: every record is handed to the channel in order (the
        channel writes them in that order) and the publisher confirms are awaited together, so a
        batch costs about one round trip instead of one per record. What was confirmed is settled
        with one write; what failed is released for the next round (here or on another replica).
        """
        docs = claim.docs
        if not docs:
            return 0
        if self._clock() >= claim.expires:
            # Too late (this process stalled): the records are free again and another relay may hold them.
            log.warning("outbox relay's claim on %d records expired before it published them", len(docs))
            await self._release(claim, [doc["_id"] for doc in docs])
            return 0
        events = [CloudEvent.model_validate(doc["event"]) for doc in docs]
        results = await asyncio.gather(*(self._publish(event) for event in events), return_exceptions=True)
        sent = [doc["_id"] for doc, result in zip(docs, results, strict=True) if result is None]
        await self._observe_backlog(docs, results)
        if sent:
            await self._settle(claim, sent)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            await self._release(claim, [doc["_id"] for doc, result in zip(docs, results, strict=True)
                                        if result is not None])
            raise failed
        await self._purge_sent()
        return len(sent)

    async def _release(self, claim: Claim, ids: list[Any]) -> None:
        """Give up the claim on records this relay did not publish: free at once, and no takeover to count."""
        try:
            await self.db[OUTBOX].update_many({"_id": {"$in": ids}, "claim": claim.token},
                                              {"$unset": {"claim": "", "lease_until": ""}})
        except Exception as exc:  # the database is away too: the lease frees them
            log.warning("outbox relay could not release %d unpublished records (%s)", len(ids), exc)

    async def _settle(self, claim: Claim, sent: list[Any]) -> None:
        """Delete (or, with a retention, mark sent) the confirmed records, with one write while the claim holds.

        A crash before this write re-publishes the batch, which consumers dedupe by event id. Without a
        retention the records are deleted at once (the broker has them): a delete is the cheapest write.
        The write matches only records still carrying this claim: one that does not was taken over by
        another relay after this relay's lease ran out, so it is published twice (counted).
        """
        ours = {"_id": {"$in": sent}, "claim": claim.token}
        if self.retention:
            mark = {"$set": {"sent": True, "sent_at": datetime.now(UTC)}}
            settled = (await self.db[OUTBOX].update_many(ours, mark)).modified_count
        else:
            settled = (await self.db[OUTBOX].delete_many(ours)).deleted_count
        self.published += len(sent)
        lost = len(sent) - settled
        if not lost:
            return
        OUTBOX_LOST_CLAIMS.inc(lost)
        log.warning("outbox relay published %d records after its lease expired and another relay took them over",
                    lost)
        # Settled all the same (the broker has them): if the relay that took them over fails before
        # publishing, nobody publishes them a third time.
        if self.retention:
            await self.db[OUTBOX].update_many({"_id": {"$in": sent}, "sent": False}, mark)
        else:
            await self.db[OUTBOX].delete_many({"_id": {"$in": sent}})

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
        """Drain at once when woken (or every ``poll_seconds``); notifications during a round coalesce into the next."""
        backoff = self.poll_seconds
        while True:
            # A round that began after stop() was called is the last: it sees every record committed before.
            final = self._stop_requested.is_set()
            # Cleared before draining: a notify() that lands mid-drain makes the wait below return at once.
            self._wake.clear()
            try:
                while (await self._drain())[1]:  # a full batch: more may be waiting
                    pass
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if final:  # what is left (released, not held) goes out from another replica, or after a restart
                    log.warning("outbox relay could not publish its last round (%s)", exc)
                    return
                # Broker or database away: keep the records, try again with backoff.
                log.warning("outbox relay could not publish (%s); retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):  # or at once for the last round, when stopped meanwhile
                    await asyncio.wait_for(self._stop_requested.wait(), backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if final:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    def start(self) -> None:
        self._stop_requested.clear()
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Publish what is pending in a last round (at most ``STOP_SECONDS``), then stop.

        Called once nothing writes to the outbox any more (requests finished, consumers stopped), so a
        shutdown leaves no record waiting for another replica's poll or lease.
        """
        if self._task is None:
            return
        self._stop_requested.set()
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        if not done:
            log.warning("outbox relay's last round took longer than %.0fs: stopped; its claims expire", STOP_SECONDS)
        await cancel(self._task)
