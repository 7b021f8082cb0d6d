"""Turning order and stock events into alerts, ``alert_sent`` events and live pushes.

Each batch of events (``shopkit.broker``) is one transaction holding the handled-event markers
(``apply_batch_once``), the alerts, the orders' last known statuses and the ``alert_sent``
events (outbox), one bulk statement per collection. Only after it commits are frames pushed:
a redelivered event changes nothing and pushes nothing.

Order events come on two queues and may be handled out of order; an event whose status is
not further along than the one already seen for that order (``orderstatus.rank``) is stale:
it makes no alert and no push, so a socket never sees an order go back to ``pending``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorDatabase
from pymongo import UpdateOne

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
from shopkit.broker import Delivery
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, StockLow
from shopkit.events import CloudEvent, new_event
from shopkit.mongo import apply_batch_once
from shopkit.orderstatus import is_newer
from shopkit.outbox import OutboxRelay, add_to_outbox

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


def _alert_sent(doc: dict[str, Any], correlation_id: str) -> CloudEvent:
    recipient: str = doc["recipient"]
    return new_event(AlertSent(
        alert_id=doc["_id"], type=doc["type"],
        recipient="admins" if recipient == ADMINS else "customer",
        customer_id=None if recipient == ADMINS else recipient.removeprefix("user:"),
        **{k: doc["data"][k] for k in ("order_id", "product_id", "status") if k in doc["data"]},
    ), SOURCE, correlation_id=correlation_id)


def current_status(data: OrderCreated | OrderUpdated) -> str:
    return data.new_status if isinstance(data, OrderUpdated) else data.status


class Notifier:
    def __init__(self, client: AsyncIOMotorClient[Any], db: AsyncIOMotorDatabase[Any], relay: OutboxRelay,
                 hub: PushHub) -> None:
        self.client = client
        self.db = db
        self.relay = relay
        self.hub = hub

    async def _commit(self, consumer: str, batch: Sequence[Delivery[Any]],
                      decide: Callable[[AsyncIOMotorClientSession, list[Delivery[Any]]],
                                       Awaitable[list[tuple[Delivery[Any], dict[str, Any]]]]]
                      ) -> list[dict[str, Any]]:
        """One transaction for the batch: markers, what ``decide`` writes, the alerts and their ``alert_sent``."""
        made: list[dict[str, Any]] = []

        async def effect(session: AsyncIOMotorClientSession, fresh: list[int]) -> None:
            made.clear()  # a retried transaction starts over
            alerts = await decide(session, [batch[i] for i in fresh])
            if alerts:
                await self.db[ALERTS].insert_many([doc for _, doc in alerts], ordered=False, session=session)
                await add_to_outbox(self.db, [_alert_sent(doc, d.correlation_id) for d, doc in alerts], session)
            made.extend(doc for _, doc in alerts)

        await apply_batch_once(self.client, self.db, consumer, [d.id for d in batch], effect)
        if made:
            self.relay.notify()
        return made

    async def on_order_events(self, batch: Sequence[Delivery[OrderCreated]] | Sequence[Delivery[OrderUpdated]]
                              ) -> list[Push]:
        """``order_created`` / ``order_updated``: an alert for the customer and an ``order_status`` frame.

        An event whose status is not further along than the one already seen for its order is stale:
        no alert, no push (a socket never sees an order go back).
        """
        frames: dict[str, dict[str, Any]] = {}

        async def decide(session: AsyncIOMotorClientSession, fresh: list[Delivery[Any]]
                         ) -> list[tuple[Delivery[Any], dict[str, Any]]]:
            frames.clear()
            ids = list({d.data.order_id for d in fresh})
            known = {doc["_id"]: doc["status"] async for doc in self.db[ORDER_STATES].find(
                {"_id": {"$in": ids}}, {"status": 1}, session=session)}
            moved: dict[str, dict[str, Any]] = {}
            alerts = []
            for d in fresh:
                data, status = d.data, current_status(d.data)
                if not is_newer(status, known.get(data.order_id)):
                    log.debug("order %s: %s is stale; nothing pushed", data.order_id, status)
                    continue
                known[data.order_id] = status
                moved[data.order_id] = {"status": status, "customer_id": data.customer_id,
                                        "updated_at": d.event.time}
                order_data: dict[str, Any] = {
                    "order_id": data.order_id, "status": status,
                    "previous_status": getattr(data, "old_status", None),
                    "total": data.total, "currency": data.currency, "at": d.event.time.isoformat(),
                }
                if getattr(data, "reason", None):
                    order_data["reason"] = data.reason
                doc = _alert_doc(d.event, user_recipient(data.customer_id), ALERT_ORDER_STATUS,
                                 order_message(data.order_id, status), order_data)
                frames[doc["_id"]] = order_data
                alerts.append((d, doc))
            if moved:
                await self.db[ORDER_STATES].bulk_write(
                    [UpdateOne({"_id": oid}, {"$set": state}, upsert=True) for oid, state in moved.items()],
                    ordered=False, session=session)
            return alerts

        made = await self._commit(f"alerts.{batch[0].event.type}", batch, decide) if batch else []
        pushes = []
        for doc in made:
            channel = self.hub.channels.user(doc["recipient"].removeprefix("user:"))
            pushes += [Push(channel, frame(ORDER_STATUS, frames[doc["_id"]])),
                       Push(channel, frame(ALERT, AlertOut.for_viewer(doc, None).model_dump(mode="json")))]
        await self._push(pushes)
        return pushes

    async def on_stock_low(self, batch: Sequence[Delivery[StockLow]]) -> list[Push]:
        """``stock_low``: one alert addressed to the admins, pushed to every connected admin."""

        async def decide(session: AsyncIOMotorClientSession, fresh: list[Delivery[Any]]
                         ) -> list[tuple[Delivery[Any], dict[str, Any]]]:
            alerts = []
            for d in fresh:
                data: StockLow = d.data
                payload = {"product_id": data.product_id, "name": data.name, "sku": data.sku, "stock": data.stock,
                           "low_stock_threshold": data.low_stock_threshold}
                alerts.append((d, _alert_doc(d.event, ADMINS, ALERT_STOCK_LOW,
                                             stock_low_message(data.name or data.product_id, data.sku, data.stock,
                                                               data.low_stock_threshold), payload)))
            return alerts

        made = await self._commit("alerts.stock_low", batch, decide) if batch else []
        pushes = [Push(self.hub.channels.role("admin"), frame(ALERT, AlertOut.for_viewer(doc, None).model_dump(
            mode="json"))) for doc in made]
        await self._push(pushes)
        return pushes

    async def _push(self, pushes: list[Push]) -> None:
        for push in pushes:
            await self.hub.publish(push.channel, push.text)
