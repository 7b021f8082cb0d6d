"""The orders side of the saga: a stock reply settles a pending order as confirmed or rejected.

The status change, its ``order_updated`` event (outbox) and the handled-event marker commit
in one transaction. A reply for an order that is no longer pending (cancelled meanwhile)
changes nothing: the products service releases or never takes the stock when it handles
the cancellation, whatever the arrival order.
"""

from __future__ import annotations

import logging
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClientSession
from pydantic import BaseModel, ConfigDict, Field

from orders.service import IllegalTransition, OrderBook
from orders.statuses import Actor, OrderStatus
from shopkit.events import STOCK_REJECTED, STOCK_RESERVED, CloudEvent
from shopkit.mongo import handle_once, parse_object_id

log = logging.getLogger("orders.saga")


class StockReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: str = Field(min_length=1)
    reason: str | None = None


OUTCOME_OF: dict[str, OrderStatus] = {STOCK_RESERVED: OrderStatus.CONFIRMED, STOCK_REJECTED: OrderStatus.REJECTED}


class OrderSaga:
    def __init__(self, book: OrderBook) -> None:
        self.book = book

    async def settle(self, event: CloudEvent) -> str:
        """Handle ``stock_reserved`` / ``stock_rejected``; returns what happened (for logs and tests)."""
        target = OUTCOME_OF[event.type]
        reply = StockReply.model_validate(event.data)
        oid = parse_object_id(reply.order_id)
        if oid is None:
            log.warning("stock reply %s names an invalid order id %r; ignored", event.id, reply.order_id)
            return "ignored"

        async def effect(session: AsyncIOMotorClientSession) -> str:
            doc: dict[str, Any] | None = await self.book.orders.find_one({"_id": oid}, {"status": 1},
                                                                          session=session)
            if doc is None:
                return "unknown order"
            try:
                await self.book.transition_in(session, oid, target, Actor.SAGA, reply.reason)
            except IllegalTransition as exc:
                return f"left {exc.current}"
            return target.value

        applied, result = await handle_once(self.book.client, self.book.db, f"orders.{event.type}", event.id,
                                            effect)
        self.book.relay.notify()
        outcome = result if applied and result is not None else "duplicate"
        log.log(logging.DEBUG if outcome == "duplicate" else logging.INFO, "order %s: %s -> %s", reply.order_id,
                event.type, outcome)
        return outcome
