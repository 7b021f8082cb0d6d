"""Transactional outbox: events are stored with the state change, then published with confirms.

:func:`add_to_outbox` writes events in the transaction of the change they describe. When this process
runs a relay for the database, the records are stored already claimed by it (writer token and lease) and,
once the transaction commits (:func:`shopkit.mongo.after_commit`), handed to the relay, which publishes
them from memory with confirms (no claim, no read) and deletes them later, several rounds per
``delete_many``. Every other record (a writer without a relay, a dead or stalled replica, a failed
publish) is found by every replica's poll, claimed with a short lease so one relay publishes it, and taken
over once the lease runs out (``microshop_outbox_takeovers``; a relay that published after losing its
claim counts it in ``microshop_outbox_lost_claims``). Consumers dedupe a re-publish by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import time
import uuid
from collections import deque
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
from shopkit.messaging.bus import EventBus, PublishNacked
from shopkit.metrics import OUTBOX_LOST_CLAIMS, OUTBOX_OLDEST_AGE, OUTBOX_PENDING, OUTBOX_TAKEOVERS
from shopkit.mongo import after_commit
from shopkit.tasks import cancel

log = logging.getLogger("shopkit.outbox")
OUTBOX = "outbox"
STOP_SECONDS = 5.0  # the longest a stopping relay spends on its last round
# A round with a nacked publish is retried after at most this long (other failures back off up to 10 s):
# the broker answered, and the retry goes out on a new channel (shopkit.messaging.publishing).
NACKED_RETRY_SECONDS = 1.0


async def ensure_outbox_indexes(db: AsyncDatabase[Any]) -> None:
    await db[OUTBOX].create_index([("sent", ASCENDING), ("seq", ASCENDING)])


# The relay that publishes what this process writes, per database (client, name): the one started last.
_writers: dict[tuple[int, str], OutboxRelay] = {}


def _writer_key(db: AsyncDatabase[Any]) -> tuple[int, str]:
    return id(db.client), db.name


@dataclass(frozen=True, slots=True)
class Committed:
    """An outbox record handed to its writer's relay once committed: published from memory until ``expires``."""

    id: str
    event: CloudEvent
    expires: datetime


async def add_to_outbox(
    db: AsyncDatabase[Any], events: list[CloudEvent], session: AsyncClientSession | None
) -> None:
    """Store ``events`` in the outbox, in ``session``'s transaction (``None``: on their own, committed at once).

    With a relay of this process running for ``db``, and a transaction run by ``in_transaction`` (or no
    session), the records are stored claimed by that relay and handed to it once committed (module
    docstring); otherwise they are stored free, for a relay's poll.
    """
    if not events:
        return
    relay = writer = _writers.get(_writer_key(db))
    handed: list[Committed] = []
    if writer is not None and session is not None and not after_commit(session, lambda: writer.committed(handed)):
        relay = None  # a transaction this module cannot see commit
    if relay is None and writer is not None:
        writer.stores_free = True  # from now on its notify() polls for such records (a relay started later polls first)
    now = datetime.now(UTC)
    stamp = time.time_ns()
    expires = now if relay is None else relay.lease_from_now()
    claim = {} if relay is None else {"claim": relay.writer_token, "lease_until": expires}
    docs = [
        {
            "_id": ev.id,
            # One sortable scalar (not an array: Mongo sorts arrays by their smallest element):
            # commit time, then position within the transaction.
            "seq": f"{stamp:020d}.{i:06d}",
            "sent": False,
            "created_at": now,
            "event": ev.model_dump(mode="json"),
            **claim,
        }
        for i, ev in enumerate(events)
    ]
    await db[OUTBOX].insert_many(docs, session=session, ordered=True)
    if relay is not None:
        handed.extend(Committed(ev.id, ev, expires) for ev in events)
        if session is None:
            relay.committed(handed)


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
    """Publishes outbox records with confirms: its own process's from memory, the rest by polling (module docstring).

    Relays of several replicas share the polled records through claims: each record is published by
    the relay that claimed it (its writer's, or the one that claimed it by polling).
    """

    def __init__(self, db: AsyncDatabase[Any], bus: EventBus, *, poll_seconds: float = 1.0,
                 batch: int = 256, retention_seconds: float = 0.0, lease_seconds: float = 10.0,
                 settle_seconds: float = 1.0, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.retention = timedelta(seconds=retention_seconds)
        self.lease = timedelta(seconds=lease_seconds)
        # Deleting what was published from memory waits at most this long, to share one statement
        # with later rounds; well inside the lease, so no relay takes a published record over meanwhile.
        self.settle_seconds = min(settle_seconds, lease_seconds / 4)
        self._clock = clock or (lambda: datetime.now(UTC))  # leases are compared across replicas' clocks
        # Readable in the records it claims (which pod, which process), unique per relay.
        self.id = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.writer_token = f"{self.id}/w"  # the claim of the records its own process writes
        self._rounds = 0
        self.published = 0  # records this relay published
        self._purged_at = datetime.now(UTC)
        self._committed: deque[Committed] = deque()  # handed over by writers, to publish from memory
        self._unsettled: list[str] = []  # published from memory, to delete (or mark sent) together
        self._settle_at = 0.0  # (monotonic) when the oldest of them must be settled
        self._poll_wanted = False
        # Set once a writer of this process stored records free for this relay's database (a transaction not run
        # by ``in_transaction``): from then on notify() makes a poll for them, as it always did.
        self.stores_free = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()

    def lease_from_now(self) -> datetime:
        return self._clock() + self.lease

    def committed(self, records: list[Committed]) -> None:
        """Records of a committed transaction, claimed by this relay's writer token: published next, in order."""
        self._committed.extend(records)
        self._wake.set()

    def notify(self) -> None:
        """Call after committing outbox records so they go out now rather than at the next poll.

        Records handed over by :func:`add_to_outbox` already woke the relay; a poll is made only once
        this process has stored records free for it (``stores_free``).
        """
        if self.stores_free:
            self._poll_wanted = True
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
            await self._release(claim.token, [doc["_id"] for doc in docs])
            return 0
        events = [CloudEvent.model_validate(doc["event"]) for doc in docs]
        results = await asyncio.gather(*(self._publish(event) for event in events), return_exceptions=True)
        sent = [doc["_id"] for doc, result in zip(docs, results, strict=True) if result is None]
        await self._observe_backlog(docs, results)
        if sent:
            await self._settle(claim.token, sent)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            await self._release(claim.token, [doc["_id"] for doc, result in zip(docs, results, strict=True)
                                              if result is not None])
            raise failed
        await self._purge_sent()
        return len(sent)

    async def publish_committed(self) -> int:
        """Publish the records writers handed over, in the order they were committed; returns how many.

        No statement: they are claimed already. Pipelined in batches as :meth:`publish`; the confirmed
        ones wait for :meth:`settle_committed`. Those whose lease ran out meanwhile (a stall) are left
        to whichever relay takes them over; those whose publish failed are released for the next poll.
        """
        published = 0
        while self._committed:
            now = self._clock()
            records: list[Committed] = []
            late = 0
            while self._committed and len(records) < self.batch:  # a batch of those whose lease still holds
                record = self._committed.popleft()
                if now < record.expires:
                    records.append(record)
                else:
                    late += 1
            if late:
                log.warning("outbox relay's lease on %d committed records expired before it published them: "
                            "left to a takeover", late)
            results = await asyncio.gather(*(self._publish(r.event) for r in records), return_exceptions=True)
            sent = [r.id for r, result in zip(records, results, strict=True) if result is None]
            if sent:
                if not self._unsettled:
                    self._settle_at = time.monotonic() + self.settle_seconds
                self._unsettled.extend(sent)
                self.published += len(sent)
                published += len(sent)
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                self._poll_wanted = True  # the next round polls for them
                await self._release(self.writer_token, [r.id for r, result in zip(records, results, strict=True)
                                                        if result is not None])
                raise failed
        return published

    async def settle_committed(self, *, now: bool = False) -> None:
        """Delete (or mark sent) what was published from memory: with one statement, once the oldest has waited
        ``settle_seconds`` or a batch has gathered (``now``: at once)."""
        if not self._unsettled:
            return
        if not now and len(self._unsettled) < self.batch and time.monotonic() < self._settle_at:
            return
        ids, self._unsettled = self._unsettled, []
        try:
            await self._settle(self.writer_token, ids, counted=True)
        except BaseException:
            self._unsettled[:0] = ids  # kept for the next round (a lease that runs out meanwhile re-publishes)
            raise

    async def _release(self, token: str, ids: list[Any]) -> None:
        """Give up the claim on records this relay did not publish: free at once, and no takeover to count."""
        try:
            await self.db[OUTBOX].update_many({"_id": {"$in": ids}, "claim": token},
                                              {"$unset": {"claim": "", "lease_until": ""}})
        except Exception as exc:  # the database is away too: the lease frees them
            log.warning("outbox relay could not release %d unpublished records (%s)", len(ids), exc)

    async def _settle(self, token: str, sent: list[Any], *, counted: bool = False) -> None:
        """Delete (or, with a retention, mark sent) the confirmed records, with one write while the claim holds.

        A crash before this write re-publishes them, which consumers dedupe by event id. Without a
        retention the records are deleted (the broker has them): a delete is the cheapest write.
        The write matches only records still carrying ``token``: one that does not was taken over by
        another relay after this relay's lease ran out, so it is published twice (counted).
        ``counted``: ``published`` already counts them.
        """
        ours = {"_id": {"$in": sent}, "claim": token}
        if self.retention:
            mark = {"$set": {"sent": True, "sent_at": datetime.now(UTC)}}
            settled = (await self.db[OUTBOX].update_many(ours, mark)).modified_count
        else:
            settled = (await self.db[OUTBOX].delete_many(ours)).deleted_count
        if not counted:
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
        """Publish what writers hand over as soon as woken; poll every ``poll_seconds`` (or when asked).

        Records handed over during a round go out in the next, which starts as soon as the round ends.
        """
        backoff = self.poll_seconds
        next_poll = 0.0  # (monotonic) the first round polls
        while True:
            # A round that began after stop() was called is the last: it sees every record committed before.
            final = self._stop_requested.is_set()
            # Cleared before the round: a hand-over or notify() that lands mid-round makes the wait return at once.
            self._wake.clear()
            try:
                await self.publish_committed()
                if final or self._poll_wanted or time.monotonic() >= next_poll:
                    self._poll_wanted = False
                    next_poll = time.monotonic() + self.poll_seconds
                    while (await self._drain())[1]:  # a full batch: more may be waiting
                        pass
                await self.settle_committed(now=final)
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if final:  # what is left (released, or held until the lease runs out) goes out from another replica
                    log.warning("outbox relay could not publish its last round (%s)", exc)
                    return
                # Broker or database away: keep the records, try again with backoff. A nack is answered
                # sooner: the broker is there, and the retry goes out on a new channel (PublishNacked).
                delay = min(backoff, NACKED_RETRY_SECONDS) if isinstance(exc, PublishNacked) else backoff
                log.warning("outbox relay could not publish (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):  # or at once for the last round, when stopped meanwhile
                    await asyncio.wait_for(self._stop_requested.wait(), delay)
                backoff = min(backoff * 2, 10.0)
                continue
            if final:
                return
            wake_at = min(next_poll, self._settle_at) if self._unsettled else next_poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wake_at - time.monotonic(), 0.0))

    def start(self) -> None:
        """Run the relay, and have it publish what this process writes to its database from now on."""
        self._stop_requested.clear()
        _writers[_writer_key(self.db)] = self
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Publish what is pending in a last round (at most ``STOP_SECONDS``), then stop.

        Called once nothing writes to the outbox any more (requests finished, consumers stopped), so a
        shutdown leaves no record waiting for another replica's poll or lease. Records written after
        this call are stored free, for a poll.
        """
        if _writers.get(_writer_key(self.db)) is self:
            del _writers[_writer_key(self.db)]
        if self._task is None:
            return
        self._stop_requested.set()
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=STOP_SECONDS)
        if not done:
            log.warning("outbox relay's last round took longer than %.0fs: stopped; what it holds is handed back",
                        STOP_SECONDS)
        await cancel(self._task)
        if not done:
            await self._hand_back()

    async def _hand_back(self) -> None:
        """After a last round cut short: settle what the broker confirmed, and free every unsent record this relay
        still claims (its writers' and its polls'), so that another replica's next poll publishes them at once
        rather than after the lease, as a takeover. A record whose publish was cut off mid-way may go out twice:
        consumers dedupe by event id. Bounded like the last round; if the database does not answer, the leases
        free them as before."""
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await self.settle_committed(now=True)
                freed = await self.db[OUTBOX].update_many(
                    {"claim": {"$regex": f"^{re.escape(self.id)}/"}, "sent": False},
                    {"$unset": {"claim": "", "lease_until": ""}})
            self._committed.clear()
            log.warning("outbox relay handed back %d unpublished records for another replica", freed.modified_count)
        except Exception as exc:
            log.warning("outbox relay could not hand back its records (%s): their leases free them", exc)
