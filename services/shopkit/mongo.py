"""MongoDB wiring: one client per process, one database per service, odmantic models on top.

The driver is PyMongo's own asyncio API (``AsyncMongoClient``). odmantic is the model layer (models,
their document conversion, query expressions and indexes); its Motor-based engine is not used:
``Documents`` does the few engine operations the services need with PyMongo's async collections.
This module is the one place that imports odmantic: models import ``Model``, ``Field`` and the
rest from here (the ``shopkit`` package's ``__init__`` makes odmantic importable without Motor).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bson import ObjectId
from bson.errors import InvalidId

# odmantic's model layer, re-exported: the services' models import it from here.
from odmantic import EmbeddedModel as EmbeddedModel
from odmantic import Field as Field
from odmantic import Index as Index
from odmantic import Model as Model
from odmantic.index import ODMBaseIndex
from odmantic.query import QueryExpression, and_
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from shopkit.metrics import TRANSACTION_RETRIES
from shopkit.settings import ExpiryMode, ServiceSettings
from shopkit.tasks import cancel

log = logging.getLogger("shopkit.mongo")
T = TypeVar("T")
M = TypeVar("M", bound=Model)

HANDLED_EVENTS = "handled_events"
DUPLICATE_KEY = 11000
WRITE_CONFLICT = 112


class SlowStatements(monitoring.CommandListener):
    """Logs each database statement slower than ``threshold_ms``: command, collection, milliseconds, and when it
    was sent (a stall shows as the statements it held up, the first of them sent the earliest)."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_us = threshold_ms * 1000
        self._collections: dict[int, str] = {}  # request id → the collection its command names

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self._collections[event.request_id] = target if isinstance(target, str) else "-"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._check(event, "")

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._check(event, " (failed)")

    def _check(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent, outcome: str) -> None:
        collection = self._collections.pop(event.request_id, "-")
        if event.duration_micros < self.threshold_us:
            return
        sent = datetime.now(UTC) - timedelta(microseconds=event.duration_micros)
        log.warning("slow database statement: %s on %s.%s took %.0f ms%s (sent %s)", event.command_name,
                    event.database_name, collection, event.duration_micros / 1000, outcome,
                    sent.strftime("%H:%M:%S.%f")[:-3])


def create_client(settings: ServiceSettings) -> AsyncMongoClient[Any]:
    listeners = [SlowStatements(settings.mongo_slow_statement_ms)] if settings.mongo_slow_statement_ms else []
    return AsyncMongoClient(
        settings.mongo_url.get_secret_value(),
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        tz_aware=True,
        appname=settings.service_name,
        event_listeners=listeners,
    )


class Documents:
    """odmantic models stored through PyMongo's async driver: what the services use of odmantic's engine.

    Same semantics as odmantic's ``AIOEngine`` for these operations: ``save`` upserts by primary key
    the fields set or changed since the instance was built or loaded (``$set``, ``upsert=True``);
    ``find_one`` takes odmantic query expressions (``Model.field == value``) or plain filter dicts,
    several meaning all of them; a loaded instance counts as unchanged. A duplicate key raises
    PyMongo's ``DuplicateKeyError``. Models with references (odmantic ``Reference``) are not
    supported: none of the shop's have any.
    """

    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.db = db

    def get_collection(self, model: type[Model]) -> AsyncCollection[Any]:
        return self.db[model.__collection__]

    @staticmethod
    def query(*queries: QueryExpression | dict[str, Any] | bool) -> dict[str, Any]:
        """The filter document of odmantic query expressions (``bool`` only types ``Model.field == value``)."""
        if any(isinstance(q, bool) for q in queries):
            raise TypeError("cannot build a query from a boolean")
        if not queries:
            return {}
        return dict(QueryExpression(queries[0]) if len(queries) == 1 else and_(*queries))  # type: ignore[arg-type]

    @staticmethod
    def load(model: type[M], raw: dict[str, Any]) -> M:
        """A model instance from its stored document, with no field counted as changed."""
        instance = model.model_validate_doc(raw)
        object.__setattr__(instance, "__fields_modified__", set())
        return instance

    async def find_one(self, model: type[M], *queries: QueryExpression | dict[str, Any] | bool,
                       session: AsyncClientSession | None = None) -> M | None:
        raw = await self.get_collection(model).find_one(self.query(*queries), session=session)
        return None if raw is None else self.load(model, raw)

    async def save(self, instance: M, *, session: AsyncClientSession | None = None) -> M:
        if instance.__references__:
            raise TypeError(f"{type(instance).__name__} has references, which Documents does not save")
        changed = instance.__fields_modified__ | instance.__mutable_fields__
        if changed:
            await self.get_collection(type(instance)).update_one(
                instance.model_dump_doc(include={instance.__primary_field__}),
                {"$set": instance.model_dump_doc(include=changed)}, upsert=True, session=session)
            object.__setattr__(instance, "__fields_modified__", set())
        return instance

    async def configure_database(self, models: Sequence[type[Model]]) -> None:
        """Create each model's indexes (those its ``model_config`` and unique/indexed fields declare)."""
        for model in models:
            collection = self.get_collection(model)
            for index in model.__indexes__():
                await collection.create_indexes(
                    [index.get_pymongo_index() if isinstance(index, ODMBaseIndex) else index])


def create_documents(client: AsyncMongoClient[Any], settings: ServiceSettings) -> Documents:
    return Documents(client[settings.database_name])


async def ping(client: AsyncMongoClient[Any]) -> None:
    await client.admin.command("ping")


def service_of(client: AsyncMongoClient[Any]) -> str:
    """The service a client belongs to (its ``appname``, :func:`create_client`); ``""`` for a bare client."""
    return str((client.options.pool_options.metadata.get("application") or {}).get("name", ""))


def count_retry(client: AsyncMongoClient[Any], reason: str) -> None:
    """One more transaction run again (``microshop_transaction_retries_total{service, reason}``)."""
    TRANSACTION_RETRIES.labels(service_of(client), reason).inc()


def _retry_reason(exc: BaseException) -> str:
    if isinstance(exc, OperationFailure) and exc.code == WRITE_CONFLICT:
        return "write-conflict"
    return "transient"


# The session of the transaction ``in_transaction`` runs in this task, and what to do once it commits.
_after_commit: ContextVar[tuple[AsyncClientSession, list[Callable[[], None]]] | None] = ContextVar(
    "after_commit", default=None)


def after_commit(session: AsyncClientSession, callback: Callable[[], None]) -> bool:
    """Have ``callback`` run once the transaction ``session`` is in has committed, if ``in_transaction`` runs it.

    Only the attempt that commits counts: what an aborted attempt registered is dropped with it. Returns
    False (and registers nothing) for a session that ``in_transaction`` does not run here.
    """
    current = _after_commit.get()
    if current is None or current[0] is not session:
        return False
    current[1].append(callback)
    return True


async def in_transaction(
    client: AsyncMongoClient[Any], work: Callable[[AsyncClientSession], Awaitable[T]]
) -> T:
    """Run ``work`` in a transaction; transient errors (e.g. WriteConflict) are retried by the driver.

    Each rerun counts in ``microshop_transaction_retries_total``: ``write-conflict`` or ``transient``
    when ``work`` raised a transient error, ``commit`` when the commit did (the driver reruns ``work``).
    Callbacks registered with :func:`after_commit` during the attempt that committed run afterwards.
    """
    failed: list[BaseException] = []
    callbacks: list[Callable[[], None]] = []
    runs = 0

    async def run(session: AsyncClientSession) -> T:
        nonlocal runs
        runs += 1
        callbacks.clear()  # a retried attempt starts afresh: the aborted one's callbacks never run
        if runs > 1:
            count_retry(client, _retry_reason(failed[-1]) if failed else "commit")
            failed.clear()
        try:
            return await work(session)
        except PyMongoError as exc:
            if exc.has_error_label("TransientTransactionError"):
                failed.append(exc)
            raise

    async with client.start_session() as session:
        token = _after_commit.set((session, callbacks))
        try:
            result = await session.with_transaction(run)
        finally:
            _after_commit.reset(token)
    for callback in callbacks:
        callback()
    return result


async def apply_batch_once(
    client: AsyncMongoClient[Any],
    db: AsyncDatabase[Any],
    markers: Sequence[str | None],
    effect: Callable[[AsyncClientSession, list[int]], Awaitable[T]],
) -> tuple[list[bool], T | None]:
    """Apply ``effect`` to the events of a batch not handled before, and record them, in one transaction.

    ``markers`` are the events' handled-event ids (``Delivery.marker``: ``<consumer>:<event id>``), or
    ``None`` for an event whose effect is idempotent by itself (a guarded transition, a record keyed by
    the event's subject that the effect reads first, a merge that changes nothing the second time):
    such an event gets no marker and is always handed to ``effect``, which must then make its
    redelivery change nothing. ``effect`` gets the positions of the events to apply: those without a
    marker written before, each marker once (a redelivery within the same batch counts as a
    duplicate). Returns per event whether it was handed to ``effect`` now, and what ``effect``
    returned (``None`` when every event was a duplicate).

    Markers are written with one statement, optimistically: redeliveries are rare, so the first
    attempt does not look markers up; a duplicate key aborts it, and a second attempt reads the
    existing markers first (one more statement) and applies the rest. A batch with no marker to
    write costs no marker statement at all.
    """
    unique: list[int] = []
    firsts: set[str] = set()
    for i, key in enumerate(markers):
        if key is None:
            unique.append(i)
        elif key not in firsts:
            firsts.add(key)
            unique.append(i)

    def attempt(look_up: bool) -> Callable[[AsyncClientSession], Awaitable[tuple[list[bool], T | None]]]:
        async def work(session: AsyncClientSession) -> tuple[list[bool], T | None]:
            fresh = unique
            if look_up:
                keys = [markers[i] for i in unique if markers[i] is not None]
                seen = {doc["_id"] async for doc in db[HANDLED_EVENTS].find(
                    {"_id": {"$in": keys}}, {"_id": 1}, session=session)} if keys else set()
                fresh = [i for i in unique if markers[i] is None or markers[i] not in seen]
            if not fresh:
                return [False] * len(markers), None
            now = utcnow()
            written = [{"_id": markers[i], "at": now} for i in fresh if markers[i] is not None]
            if written:
                await db[HANDLED_EVENTS].insert_many(written, ordered=True, session=session)
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
        count_retry(client, "duplicate-marker")
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
SWEEP_JITTER = 0.2  # each wait between sweeps is the interval ± 20 %, so replicas and services spread out


async def ensure_expiry_index(db: AsyncDatabase[Any], collection: str, field: str, name: str,
                              expire_after: int | None) -> None:
    """The index ``name`` on ``field``: a TTL index deleting ``expire_after`` seconds past it, or a plain one.

    Changed options (another ``expire_after``, a switch between TTL and plain) replace the index (drop,
    then create) rather than ``collMod``: a service's database user has ``readWrite`` on its own database
    only, which may drop and create indexes but not run ``collMod``. Between the two nothing expires,
    which only delays a purge.
    """
    options: dict[str, Any] = {} if expire_after is None else {"expireAfterSeconds": max(expire_after, 0)}
    try:
        await db[collection].create_index(field, name=name, **options)
    except OperationFailure as exc:
        if exc.code not in INDEX_OPTIONS_CONFLICT:
            raise
        await db[collection].drop_index(name)
        await db[collection].create_index(field, name=name, **options)


@dataclass(frozen=True)
class Expiring:
    """Documents of ``collection`` expire ``seconds`` after the time in their ``field``."""

    collection: str
    field: str
    seconds: float
    index: str

    def cutoff(self, now: datetime) -> dict[str, Any]:
        return {self.field: {"$lt": now - timedelta(seconds=self.seconds)}}


class Retention:
    """Deletes a service's documents once past their retention, as ``MICROSHOP_MONGO_EXPIRY`` says.

    ``expire`` declares a collection's expiry at start-up. With ``ttl-index`` the database deletes (a TTL
    index); with ``sweep`` a task of this process does, every ``sweep_seconds`` (jittered): one
    ``delete_many`` of the documents past their time per collection, by the same index (not a TTL one).
    Switching either way replaces the index. Several replicas sweeping the same collection delete the
    same documents; the second finds nothing left.
    """

    def __init__(self, db: AsyncDatabase[Any], mode: ExpiryMode = "ttl-index", sweep_seconds: float = 60.0) -> None:
        self.db = db
        self.mode: ExpiryMode = mode
        self.sweep_seconds = sweep_seconds
        self.expiring: list[Expiring] = []
        self._task: asyncio.Task[None] | None = None

    async def expire(self, collection: str, field: str, seconds: float, index: str) -> None:
        """Documents of ``collection`` are deleted ``seconds`` after the time in ``field`` (a datetime)."""
        ttl = self.mode == "ttl-index"
        await ensure_expiry_index(self.db, collection, field, index, int(seconds) if ttl else None)
        if ttl:
            return
        self.expiring = [e for e in self.expiring if e.index != index or e.collection != collection]
        self.expiring.append(Expiring(collection, field, max(int(seconds), 0), index))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mongo-expiry-sweep")

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete what is past its retention now; the number of documents deleted."""
        now = now or utcnow()
        deleted = 0
        for expiring in self.expiring:
            result = await self.db[expiring.collection].delete_many(expiring.cutoff(now))
            deleted += result.deleted_count
        return deleted

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds * random.uniform(1 - SWEEP_JITTER, 1 + SWEEP_JITTER))  # noqa: S311 (jitter)
            try:
                if deleted := await self.sweep():
                    log.debug("expiry sweep deleted %d documents", deleted)
            except PyMongoError as exc:  # the next round tries again; nothing is lost by waiting
                log.warning("expiry sweep failed: %s", exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)


async def ensure_marker_retention(retention: Retention, seconds: float) -> None:
    """Handled-event markers expire ``seconds`` after they were written (``MICROSHOP_HANDLED_EVENT_RETENTION_SECONDS``).

    A redelivery older than that would be applied again, so the retention must be far longer than any
    event stays in flight (RabbitMQ redelivers within seconds; a dead letter is replayed within days).
    """
    await retention.expire(HANDLED_EVENTS, "at", seconds, MARKERS_TTL_INDEX)


def utcnow() -> datetime:
    """Timezone-aware now, as every stored timestamp is."""
    return datetime.now(UTC)


def parse_object_id(value: str) -> ObjectId | None:
    """The ObjectId an id string names, or None for anything that is not one (a caller's 404)."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None
