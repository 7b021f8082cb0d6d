"""Placing orders and moving them through the state machine; every change commits its event (outbox)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from orders.catalog import CatalogClient, CatalogUnavailable
from orders.limits import OrderLimits, PerCustomer
from orders.models import Order, OrderLine
from orders.schemas import OrderOut, OrderPage
from orders.statuses import Actor, OrderStatus, can_transition
from shopkit.auth import Principal
from shopkit.batching import Batcher
from shopkit.context import current_correlation_id
from shopkit.contracts.events import OrderCreated, OrderUpdated
from shopkit.contracts.events import OrderLine as EventLine
from shopkit.contracts.orders import CreateOrderRequest
from shopkit.errors import ProblemError
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.outbox import OutboxRelay, add_to_outbox
from shopkit.metrics import ORDER_STATUS_CHANGES, ORDERS_PLACED
from shopkit.mongo import in_transaction, parse_object_id, utcnow

log = logging.getLogger("orders.service")

SOURCE = "/microshop/orders"
ORDERS = "orders"

# ``Idempotency-Key``: one order per (customer, key); only orders placed with a key are in the index.
BY_IDEMPOTENCY_KEY = [("customer_id", ASCENDING), ("idempotency_key", ASCENDING)]
IDEMPOTENCY_INDEX_OPTIONS: dict[str, Any] = {"name": "by_idempotency_key", "unique": True,
                             "partialFilterExpression": {"idempotency_key": {"$exists": True}}}


def request_fingerprint(req: CreateOrderRequest) -> str:
    """What a retry with the same ``Idempotency-Key`` must send again: the order's lines."""
    body = json.dumps(req.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def key_reused(key: str) -> ProblemError:
    return ProblemError(422, f"Idempotency-Key {key!r} was used for a different order", type_="idempotency-key-reused")


@dataclass(frozen=True)
class Placed:
    """What :meth:`OrderBook.place` did: the order, and whether it is one placed before with the same key."""

    order: OrderOut
    replayed: bool = False


def order_not_found(order_id: str) -> ProblemError:
    return ProblemError(404, f"order {order_id} does not exist", type_="order-not-found")


def _lines(doc: dict[str, Any]) -> tuple[EventLine, ...]:
    return tuple(EventLine(product_id=line["product_id"], name=line["name"], unit_price=line["unit_price"],
                           quantity=line["quantity"]) for line in doc["items"])


def order_created_event(doc: dict[str, Any]) -> CloudEvent:
    return new_event(OrderCreated(
        order_id=str(doc["_id"]), customer_id=doc["customer_id"], status=doc["status"], items=_lines(doc),
        total=doc["total"], currency=doc["currency"], created_at=doc["created_at"],
    ), SOURCE)


def order_updated_event(doc: dict[str, Any], old_status: str, new_status: str, reason: str | None, *,
                        correlation_id: str | None = None, traceparent: str | None = None) -> CloudEvent:
    return new_event(OrderUpdated(
        order_id=str(doc["_id"]), customer_id=doc["customer_id"], old_status=old_status,  # type: ignore[arg-type]
        new_status=new_status, status=new_status, items=_lines(doc),  # type: ignore[arg-type]
        total=doc["total"], currency=doc["currency"], reason=reason or None,
    ), SOURCE, correlation_id=correlation_id, traceparent=traceparent)


@dataclass(frozen=True)
class Transition:
    """A status change that was committed (or ``None`` fields when nothing changed)."""

    doc: dict[str, Any]
    old_status: str
    new_status: str


class IllegalTransition(Exception):
    def __init__(self, order_id: str, current: str, target: str) -> None:
        super().__init__(f"order {order_id} is {current}; it cannot become {target}")
        self.current = current
        self.target = target


class OrderBook:
    def __init__(self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], catalog: CatalogClient,
                 relay: OutboxRelay, *, batch_max_size: int = 64, batch_linger_seconds: float = 0.002,
                 limits: OrderLimits | None = None) -> None:
        self.client = client
        self.limits = limits or OrderLimits()
        self.placing = PerCustomer()
        self.db = db
        self.orders = db[ORDERS]
        self.catalog = catalog
        self.relay = relay
        # Placements commit together (one transaction, one statement per collection, per batch), so
        # a burst of orders costs a few transactions instead of one each; a lone order is written at once.
        self.placements: Batcher[tuple[dict[str, Any], CloudEvent], ObjectId | None] = Batcher(
            self._write_placements, max_size=batch_max_size, linger=batch_linger_seconds, name="orders.place")

    async def _write_placements(self, batch: Sequence[tuple[dict[str, Any], CloudEvent]]
                                ) -> list[ObjectId | None]:
        """Insert a batch of orders; per item ``None``, or the id of an order of the same batch with its key.

        Two placements with the same ``Idempotency-Key`` in one batch are deduplicated here, so the
        second never makes the batch fail for its neighbours; it is answered with the first.
        """
        first_of: dict[tuple[str, str], ObjectId] = {}
        results: list[ObjectId | None] = []
        fresh: list[tuple[dict[str, Any], CloudEvent]] = []
        for doc, event in batch:
            key = doc.get("idempotency_key")
            if key is not None and (doc["customer_id"], key) in first_of:
                results.append(first_of[(doc["customer_id"], key)])
                continue
            if key is not None:
                first_of[(doc["customer_id"], key)] = doc["_id"]
            results.append(None)
            fresh.append((doc, event))

        async def work(session: AsyncClientSession) -> None:
            await self.orders.insert_many([doc for doc, _ in fresh], ordered=True, session=session)
            await add_to_outbox(self.db, [event for _, event in fresh], session)

        await in_transaction(self.client, work)
        self.relay.notify()
        return results

    async def _by_key(self, customer_id: str, key: str) -> dict[str, Any] | None:
        return await self.orders.find_one({"customer_id": customer_id, "idempotency_key": key})

    def _replay(self, doc: dict[str, Any], key: str, fingerprint: str) -> Placed:
        if doc.get("request_fingerprint") != fingerprint:
            raise key_reused(key)
        return Placed(OrderOut.from_doc(doc), replayed=True)

    async def place(self, principal: Principal, req: CreateOrderRequest,
                    idempotency_key: str | None = None) -> Placed:
        """Place an order; with an ``idempotency_key`` a retry returns the order the key placed first."""
        self.limits.check_request(req)
        fingerprint = request_fingerprint(req) if idempotency_key is not None else ""
        if idempotency_key is not None and (earlier := await self._by_key(principal.id, idempotency_key)):
            return self._replay(earlier, idempotency_key, fingerprint)
        try:
            catalog = await self.catalog.products(line.product_id for line in req.items)
        except CatalogUnavailable as exc:
            log.warning("catalog unavailable while placing an order: %s", exc)
            raise ProblemError(503, "the catalog is unavailable; try again shortly", type_="catalog-unavailable",
                               headers={"Retry-After": "2"}) from exc
        lines: list[OrderLine] = []
        errors = []
        for i, line in enumerate(req.items):
            product = catalog.get(line.product_id)
            if product is None:
                errors.append({"field": f"items[{i}].product_id", "rule": f"product {line.product_id} does not exist",
                               "source": "body"})
                continue
            lines.append(OrderLine(product_id=line.product_id, name=product.name, unit_price=product.price,
                                   quantity=line.quantity))
        if errors:
            raise ProblemError(422, "; ".join(f"{e['field']}: {e['rule']}" for e in errors),
                               type_="validation-error", title="Request validation failed", errors=errors)
        currencies = sorted({catalog[line.product_id].currency for line in lines})
        if len(currencies) != 1:
            raise ProblemError(422, f"items: one currency per order, these products are priced in "
                                    f"{', '.join(currencies)}", type_="mixed-currencies")
        order = Order(
            id=ObjectId(), customer_id=principal.id, status=OrderStatus.PENDING.value, items=lines,
            total=sum(line.unit_price * line.quantity for line in lines), currency=currencies[0],
            correlation_id=current_correlation_id(),
        )
        doc = order.model_dump_doc()
        if idempotency_key is not None:
            doc.update(idempotency_key=idempotency_key, request_fingerprint=fingerprint)
        event = order_created_event(doc)

        try:
            if principal.is_admin or not self.limits.caps_outstanding:  # no cap: no one-at-a-time placing
                first = await self.placements.submit((doc, event))
            else:
                async with self.placing.one_at_a_time(principal.id):
                    # A retry that waited here for its first attempt is answered with it, not counted twice.
                    if idempotency_key is not None and (earlier := await self._by_key(principal.id, idempotency_key)):
                        return self._replay(earlier, idempotency_key, fingerprint)
                    await self.limits.check_outstanding(self.orders, principal.id, req)
                    first = await self.placements.submit((doc, event))
        except (DuplicateKeyError, BulkWriteError) as exc:
            # A concurrent request with the same key committed first (its batch, then this one alone).
            if idempotency_key is None or (earlier := await self._by_key(principal.id, idempotency_key)) is None:
                raise
            log.info("order with Idempotency-Key %r placed concurrently: %s", idempotency_key, exc)
            return self._replay(earlier, idempotency_key, fingerprint)
        if first is not None:
            assert idempotency_key is not None
            earlier = await self.orders.find_one({"_id": first})
            assert earlier is not None
            return self._replay(earlier, idempotency_key, fingerprint)
        ORDERS_PLACED.inc()
        log.info("order %s placed: %d line(s), %d %s", doc["_id"], len(lines), doc["total"], doc["currency"])
        return Placed(OrderOut.from_doc(doc))

    async def get(self, principal: Principal, order_id: str) -> OrderOut:
        return OrderOut.from_doc(await self._visible(principal, order_id))

    async def _visible(self, principal: Principal, order_id: str) -> dict[str, Any]:
        """The order if the caller may see it; someone else's order is 404, like one that does not exist."""
        oid = parse_object_id(order_id)
        doc = None if oid is None else await self.orders.find_one({"_id": oid})
        if doc is None or (doc["customer_id"] != principal.id and not principal.is_admin):
            raise order_not_found(order_id)
        return doc

    async def mine(self, principal: Principal, limit: int, offset: int) -> OrderPage:
        flt = {"customer_id": principal.id}
        cursor = self.orders.find(flt).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        docs = await cursor.skip(offset).limit(limit).to_list(limit)
        total = await self.orders.count_documents(flt)
        return OrderPage(items=[OrderOut.from_doc(d) for d in docs], total=total, limit=limit, offset=offset)

    async def transition_in(self, session: AsyncClientSession, oid: ObjectId, target: OrderStatus,
                            actor: Actor, reason: str | None = None) -> Transition:
        """Inside the caller's transaction: check the table, compare-and-set the status, queue the event.

        The update is guarded by the status just read, so a concurrent change makes it a no-op
        (or a write conflict the driver retries) instead of a lost update.
        """
        doc = await self.orders.find_one({"_id": oid}, session=session)
        if doc is None:
            raise order_not_found(str(oid))
        current = doc["status"]
        if not can_transition(current, target, actor):
            raise IllegalTransition(str(oid), current, target)
        stamp = utcnow()
        result = await self.orders.update_one(
            {"_id": oid, "status": current}, {"$set": {"status": target.value, "updated_at": stamp}},
            session=session)
        if result.modified_count != 1:
            raise IllegalTransition(str(oid), current, target)  # pragma: no cover - a conflict is retried first
        doc.update(status=target.value, updated_at=stamp)
        await add_to_outbox(self.db, [order_updated_event(doc, current, target.value, reason)], session)
        return Transition(doc, current, target.value)

    async def change_status(self, principal: Principal, order_id: str, target: OrderStatus,
                            actor: Actor) -> OrderOut:
        """Cancel (owner) or ship/deliver (admin); 409 for a transition the table does not allow."""
        doc = await self._visible(principal, order_id)
        oid = doc["_id"]

        async def work(session: AsyncClientSession) -> Transition:
            return await self.transition_in(session, oid, target, actor)

        try:
            change = await in_transaction(self.client, work)
        except IllegalTransition as exc:
            raise ProblemError(409, str(exc), type_="illegal-transition",
                               current_status=exc.current, requested_status=exc.target) from None
        self.relay.notify()
        log.info("order %s: %s -> %s by %s", order_id, change.old_status, change.new_status, actor.value)
        ORDER_STATUS_CHANGES.labels(change.new_status).inc()
        return OrderOut.from_doc(change.doc)
