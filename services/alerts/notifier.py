"""Turning order and stock events into alerts, ``alert_sent`` events and live pushes.

Each batch of events (``shopkit.messaging.bus``) is one transaction holding the alerts, the orders' last
known statuses, the ``alert_sent`` events (outbox) and the handled-event markers of its
``stock_low`` events (``apply_batch_once``), one bulk statement per collection. Only after it
commits are frames pushed (one Redis round trip for the batch): a redelivered event changes
nothing and pushes nothing (an order event by its order's stored status, a ``stock_low`` by its
marker).

Order events come on two queues and may be handled out of order; an event whose status is
not further along than the one already seen for that order (``orderstatus.rank``) is stale:
it makes no alert and no push, so a socket never sees an order go back to ``pending``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from alerts.inbox import ADMINS, ALERTS, AlertOut, user_recipient
from alerts.messages import (
    ALERT,
    ALERT_ORDER_STATUS,
    ALERT_STOCK_LOW,
    ORDER_STATUS,
    frame,
    order_message,
    stock_low_message,
)
from alerts.push import PushHub
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, StockLow
from shopkit.events import CloudEvent, new_event
from shopkit.messaging.bus import Delivery
from shopkit.messaging.outbox import OutboxRelay, add_to_outbox
from shopkit.mongo import apply_batch_once
from shopkit.orderstatus import RANK, is_newer, rank

log = logging.getLogger("alerts.notifier")

SOURCE = "/microshop/alerts"
ORDER_STATES = "order_states"


def alert_id(event_id: str, recipient: str) -> str:
    """Deterministic: the same event never makes two alerts for one recipient, even past the marker."""
    return hashlib.sha256(f"{event_id}|{recipient}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Push:
    channel: str
    text: str


def _alert_doc(event: CloudEvent, recipient: str, type_: str, message: str, data: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": alert_id(event.id, recipient), "recipient": recipient, "type": type_, "message": message,
        "data": data, "created_at": datetime.now(UTC), "event_id": event.id,
    }
    if recipient == ADMINS:
        doc["read_by"] = []
    else:
        doc["read"] = False
    return doc


def _alert_sent(doc: dict[str, Any], correlation_id: str, traceparent: str | None = None) -> CloudEvent:
    recipient: str = doc["recipient"]
    return new_event(AlertSent(
        alert_id=doc["_id"], type=doc["type"],
        recipient="admins" if recipient == ADMINS else "customer",
        customer_id=None if recipient == ADMINS else recipient.removeprefix("user:"),
        **{k: doc["data"][k] for k in ("order_id", "product_id", "status") if k in doc["data"]},
    ), SOURCE, correlation_id=correlation_id, traceparent=traceparent)


def current_status(data: OrderCreated | OrderUpdated) -> str:
    return data.new_status if isinstance(data, OrderUpdated) else data.status


def _order_state(d: Delivery[Any]) -> dict[str, Any]:
    return {"status": current_status(d.data), "customer_id": d.data.customer_id, "updated_at": d.event.time}


def _order_alert(d: Delivery[Any]) -> tuple[Delivery[Any], dict[str, Any], dict[str, Any] | None]:
    """The customer's alert of an order event that moves its order forward, and its ``order_status`` frame."""
    data, status = d.data, current_status(d.data)
    order_data: dict[str, Any] = {
        "order_id": data.order_id, "status": status, "previous_status": getattr(data, "old_status", None),
        "total": data.total, "currency": data.currency, "at": d.event.time.isoformat(),
    }
    if getattr(data, "reason", None):
        order_data["reason"] = data.reason
    doc = _alert_doc(d.event, user_recipient(data.customer_id), ALERT_ORDER_STATUS,
                     order_message(data.order_id, status), order_data)
    return d, doc, order_data


class Notifier:
    def __init__(self, client: AsyncMongoClient[Any], db: AsyncDatabase[Any], relay: OutboxRelay,
                 hub: PushHub) -> None:
        self.client = client
        self.db = db
        self.relay = relay
        self.hub = hub

    async def handle(self, batch: Sequence[Delivery[OrderCreated | OrderUpdated | StockLow]]) -> list[Push]:
        """A batch of ``order_created``, ``order_updated`` and ``stock_low``, in one transaction.

        Order events: an alert for the customer and an ``order_status`` frame, unless the event is
        stale (its status is not further along than the one already seen for its order: a socket
        never sees an order go back). ``stock_low``: one alert addressed to the admins.
        """
        made: list[tuple[dict[str, Any], dict[str, Any] | None]] = []

        async def effect(session: AsyncClientSession, fresh: list[int]) -> None:
            made.clear()  # a retried transaction starts over
            deliveries = [batch[i] for i in fresh]
            alerts = await self._order_alerts(session, [d for d in deliveries if not isinstance(d.data, StockLow)])
            alerts += [(d, self._stock_alert(d), None) for d in deliveries if isinstance(d.data, StockLow)]
            if alerts:
                await self.db[ALERTS].insert_many([doc for _, doc, _ in alerts], ordered=False, session=session)
                await add_to_outbox(self.db, [_alert_sent(doc, d.correlation_id, d.traceparent)
                                                  for d, doc, _ in alerts], session)
            made.extend((doc, order_frame) for _, doc, order_frame in alerts)

        if batch:
            # Order events need no marker: an event whose status is not further along than the one stored for
            # its order (``order_states``, read and written in this transaction) is stale and makes nothing, so
            # a redelivered one changes nothing. A stock_low has no such state: it keeps its marker.
            await apply_batch_once(self.client, self.db,
                                   [d.marker if isinstance(d.data, StockLow) else None for d in batch], effect)
        if made:
            self.relay.notify()
        pushes: list[Push] = []
        for doc, order_frame in made:
            alert = frame(ALERT, AlertOut.for_viewer(doc, None).model_dump(mode="json"))
            if order_frame is None:
                pushes.append(Push(self.hub.channels.role("admin"), alert))
            else:
                channel = self.hub.channels.user(doc["recipient"].removeprefix("user:"))
                pushes += [Push(channel, frame(ORDER_STATUS, order_frame)), Push(channel, alert)]
        await self._push(pushes)
        return pushes

    async def _order_alerts(self, session: AsyncClientSession, fresh: list[Delivery[Any]]
                            ) -> list[tuple[Delivery[Any], dict[str, Any], dict[str, Any] | None]]:
        """The order events that move their order forward, as alerts; the orders' new statuses are written."""
        if not fresh:
            return []
        if len(fresh) == 1:
            return await self._one_order_alert(session, fresh[0])
        ids = list({d.data.order_id for d in fresh})
        known = {doc["_id"]: doc["status"] async for doc in self.db[ORDER_STATES].find(
            {"_id": {"$in": ids}}, {"status": 1}, session=session)}
        moved: dict[str, dict[str, Any]] = {}
        alerts: list[tuple[Delivery[Any], dict[str, Any], dict[str, Any] | None]] = []
        for d in fresh:
            status = current_status(d.data)
            if not is_newer(status, known.get(d.data.order_id)):
                log.debug("order %s: %s is stale; nothing pushed", d.data.order_id, status)
                continue
            known[d.data.order_id] = status
            moved[d.data.order_id] = _order_state(d)
            alerts.append(_order_alert(d))
        if moved:
            await self.db[ORDER_STATES].bulk_write(
                [UpdateOne({"_id": oid}, {"$set": state}, upsert=True) for oid, state in moved.items()],
                ordered=False, session=session)
        return alerts

    async def _one_order_alert(self, session: AsyncClientSession, d: Delivery[Any]
                               ) -> list[tuple[Delivery[Any], dict[str, Any], dict[str, Any] | None]]:
        """One event (every batch at light load) in one statement where its order is where it is expected.

        ``order_created`` first inserts its order's state (``$setOnInsert``: nothing is changed if one is
        there); a later status first moves a state that is behind it (a guarded update). Only when that
        first statement finds the state elsewhere is the other one tried: an ``order_updated`` seen before
        its order's ``order_created`` inserts the state; an ``order_created`` whose order has a state of
        a status this service does not know moves it (``rank`` -1, as in :func:`is_newer`). Neither took:
        the event is stale. The batch path reads first instead (one read for every order of the batch).
        """
        status, state = current_status(d.data), _order_state(d)
        states = self.db[ORDER_STATES]
        order_id = d.data.order_id

        async def insert() -> bool:
            result = await states.update_one({"_id": order_id}, {"$setOnInsert": state}, upsert=True,
                                             session=session)
            return result.upserted_id is not None

        async def move() -> bool:
            not_behind = [s for s in RANK if not is_newer(status, s)]
            result = await states.update_one({"_id": order_id, "status": {"$nin": not_behind}}, {"$set": state},
                                             session=session)
            return result.matched_count == 1

        first, then = (insert, move) if rank(status) == 0 else (move, insert)
        if not await first() and not await then():
            log.debug("order %s: %s is stale; nothing pushed", order_id, status)
            return []
        return [_order_alert(d)]

    @staticmethod
    def _stock_alert(d: Delivery[Any]) -> dict[str, Any]:
        data = d.data
        payload = {"product_id": data.product_id, "name": data.name, "sku": data.sku, "stock": data.stock,
                   "low_stock_threshold": data.low_stock_threshold}
        return _alert_doc(d.event, ADMINS, ALERT_STOCK_LOW,
                          stock_low_message(data.name or data.product_id, data.sku, data.stock,
                                            data.low_stock_threshold), payload)

    async def _push(self, pushes: list[Push]) -> None:
        await self.hub.publish_many([(push.channel, push.text) for push in pushes])
