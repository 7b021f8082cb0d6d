"""Turning order and stock events into alerts, ``alert_sent`` events and live pushes.

Each handler runs one transaction holding the handled-event marker (``handle_once``), the
alert, the order's last known status and the ``alert_sent`` event (outbox). Only after it
commits are frames pushed: a redelivered event changes nothing and pushes nothing.

Order events come on two queues and may be handled out of order; an event whose status is
not further along than the one already seen for that order (``orderstatus.rank``) is stale:
it makes no alert and no push, so a socket never sees an order go back to ``pending``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientSession, AsyncIOMotorDatabase
from pydantic import Field

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
from shopkit.events import ALERT_SENT, CloudEvent, EventPayload, new_event
from shopkit.mongo import handle_once
from shopkit.orderstatus import older_than
from shopkit.outbox import OutboxRelay, add_to_outbox

log = logging.getLogger("alerts.notifier")

SOURCE = "/microshop/alerts"
ORDER_STATES = "order_states"


class OrderEventData(EventPayload):
    """``order_created`` and ``order_updated`` (``new_status``, else ``status``, is where the order is now)."""

    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    status: str | None = None
    new_status: str | None = None
    old_status: str | None = None
    total: int | None = None
    currency: str | None = None
    reason: str | None = None

    @property
    def current(self) -> str:
        return self.new_status or self.status or "pending"


class StockLowData(EventPayload):
    product_id: str = Field(min_length=1)
    name: str = ""
    sku: str | None = None
    stock: int
    low_stock_threshold: int | None = None


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


def _alert_sent(doc: dict[str, Any]) -> CloudEvent:
    recipient: str = doc["recipient"]
    return new_event(ALERT_SENT, SOURCE, {
        "alert_id": doc["_id"], "type": doc["type"],
        "recipient": "admins" if recipient == ADMINS else "customer",
        "customer_id": None if recipient == ADMINS else recipient.removeprefix("user:"),
        **{k: doc["data"][k] for k in ("order_id", "product_id", "status") if k in doc["data"]},
    })


class Notifier:
    def __init__(self, client: AsyncIOMotorClient[Any], db: AsyncIOMotorDatabase[Any], relay: OutboxRelay,
                 hub: PushHub) -> None:
        self.client = client
        self.db = db
        self.relay = relay
        self.hub = hub

    async def _commit(self, consumer: str, event: CloudEvent, doc: dict[str, Any],
                      state_update: tuple[dict[str, Any], dict[str, Any]] | None = None) -> bool:
        async def effect(session: AsyncIOMotorClientSession) -> bool:
            if state_update is not None:
                flt, upd = state_update
                # Guarded: only moves an order forward. No match (stale event) → no alert either.
                result = await self.db[ORDER_STATES].update_one(flt, upd, upsert=False, session=session)
                if result.matched_count == 0:
                    existing = await self.db[ORDER_STATES].find_one({"_id": flt["_id"]}, session=session)
                    if existing is not None:
                        return False
                    await self.db[ORDER_STATES].insert_one({"_id": flt["_id"], **upd["$set"]}, session=session)
            await self.db[ALERTS].insert_one(doc, session=session)
            await add_to_outbox(self.db, [_alert_sent(doc)], session)
            return True

        applied, made = await handle_once(self.client, self.db, consumer, event.id, effect)
        if applied and made:
            self.relay.notify()
        return bool(applied and made)

    async def on_order_event(self, event: CloudEvent) -> list[Push]:
        """``order_created`` / ``order_updated``: an alert for the customer and an ``order_status`` frame."""
        data = OrderEventData.model_validate(event.data)
        status = data.current
        order_data: dict[str, Any] = {
            "order_id": data.order_id, "status": status, "previous_status": data.old_status,
            "total": data.total, "currency": data.currency, "at": event.time.isoformat(),
        }
        if data.reason:
            order_data["reason"] = data.reason
        recipient = user_recipient(data.customer_id)
        doc = _alert_doc(event, recipient, ALERT_ORDER_STATUS, order_message(data.order_id, status), order_data)
        state_filter = {"_id": data.order_id, "status": {"$in": older_than(status)}}
        state_set = {"$set": {"status": status, "customer_id": data.customer_id, "updated_at": event.time}}
        if not await self._commit(f"alerts.{event.type}", event, doc, (state_filter, state_set)):
            log.debug("order %s: %s is stale or a redelivery; nothing pushed", data.order_id, status)
            return []
        channel = self.hub.channels.user(data.customer_id)
        pushes = [Push(channel, frame(ORDER_STATUS, order_data)),
                  Push(channel, frame(ALERT, AlertOut.for_viewer(doc, None).model_dump(mode="json")))]
        await self._push(pushes)
        return pushes

    async def on_stock_low(self, event: CloudEvent) -> list[Push]:
        """``stock_low``: one alert addressed to the admins, pushed to every connected admin."""
        data = StockLowData.model_validate(event.data)
        payload = {"product_id": data.product_id, "name": data.name, "sku": data.sku, "stock": data.stock,
                   "low_stock_threshold": data.low_stock_threshold}
        doc = _alert_doc(event, ADMINS, ALERT_STOCK_LOW,
                         stock_low_message(data.name or data.product_id, data.sku, data.stock,
                                           data.low_stock_threshold), payload)
        if not await self._commit(f"alerts.{event.type}", event, doc):
            return []
        pushes = [Push(self.hub.channels.role("admin"),
                       frame(ALERT, AlertOut.for_viewer(doc, None).model_dump(mode="json")))]
        await self._push(pushes)
        return pushes

    async def _push(self, pushes: list[Push]) -> None:
        for push in pushes:
            await self.hub.publish(push.channel, push.text)
