"""The CloudEvents 1.0 envelope and the event catalogue (docs/architecture.md, "Events")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shopkit.context import current_correlation_id

# Exchanges (topic, durable) and routing keys; the routing key is also the event type.
ORDER_EXCHANGE = "order_exchange"
PRODUCT_EXCHANGE = "product_exchange"
ALERT_EXCHANGE = "alert_exchange"

ORDER_CREATED = "order_created"
ORDER_UPDATED = "order_updated"
STOCK_RESERVED = "stock_reserved"
STOCK_REJECTED = "stock_rejected"
PRODUCT_UPDATED = "product_updated"
STOCK_LOW = "stock_low"
ALERT_SENT = "alert_sent"

EXCHANGE_OF: dict[str, str] = {
    ORDER_CREATED: ORDER_EXCHANGE,
    ORDER_UPDATED: ORDER_EXCHANGE,
    STOCK_RESERVED: PRODUCT_EXCHANGE,
    STOCK_REJECTED: PRODUCT_EXCHANGE,
    PRODUCT_UPDATED: PRODUCT_EXCHANGE,
    STOCK_LOW: PRODUCT_EXCHANGE,
    ALERT_SENT: ALERT_EXCHANGE,
}


def _now() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    """CloudEvents 1.0 attributes plus ``correlationid``; the payload is in ``data``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime = Field(default_factory=_now)
    specversion: Literal["1.0"] = "1.0"
    datacontenttype: str = "application/json"
    correlationid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


def new_event(type_: str, source: str, data: dict[str, Any], *, correlation_id: str | None = None) -> CloudEvent:
    """A new event; the correlation id defaults to that of the request or message being handled."""
    return CloudEvent(
        source=source, type=type_, data=data, correlationid=correlation_id or current_correlation_id()
    )


class EventPayload(BaseModel):
    """Base of a consumer's view of an event's ``data``: it reads the fields it needs and ignores the
    rest (tolerant reader), so producers can add fields without breaking consumers."""

    model_config = ConfigDict(extra="ignore")
