"""The CloudEvents 1.0 envelope. What each event carries is defined once, in ``shopkit.contracts.events``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from shopkit.context import current_correlation_id
from shopkit.contracts.events import (
    ALERT_EXCHANGE,
    CATALOGUE,
    ORDER_EXCHANGE,
    PRODUCT_EXCHANGE,
    AlertSent,
    EventData,
    OrderCreated,
    OrderUpdated,
    ProductUpdated,
    StockLow,
    StockRejected,
    StockReserved,
)
from shopkit.tracing import current_traceparent

__all__ = [
    "ALERT_EXCHANGE", "ALERT_SENT", "EXCHANGE_OF", "ORDER_CREATED", "ORDER_EXCHANGE", "ORDER_UPDATED",
    "PRODUCT_EXCHANGE", "PRODUCT_UPDATED", "STOCK_LOW", "STOCK_REJECTED", "STOCK_RESERVED", "CloudEvent",
    "new_event",
]

# The event types (an event's routing key is its type, or ``<type>.<value>``: ``CloudEvent.routing_key``).
ORDER_CREATED = OrderCreated.TYPE
ORDER_UPDATED = OrderUpdated.TYPE
STOCK_RESERVED = StockReserved.TYPE
STOCK_REJECTED = StockRejected.TYPE
PRODUCT_UPDATED = ProductUpdated.TYPE
STOCK_LOW = StockLow.TYPE
ALERT_SENT = AlertSent.TYPE

EXCHANGE_OF: dict[str, str] = {type_: model.EXCHANGE for type_, model in CATALOGUE.items()}


def _now() -> datetime:
    return datetime.now(UTC)


class CloudEvent(BaseModel):
    """CloudEvents 1.0 attributes plus ``correlationid``; the payload (a catalogue model, as JSON) is in ``data``.

    ``traceparent`` (the CloudEvents distributed-tracing extension) is the W3C trace context of the
    work that created the event, when tracing is on; absent otherwise.
    """

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime = Field(default_factory=_now)
    specversion: Literal["1.0"] = "1.0"
    datacontenttype: str = "application/json"
    correlationid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = Field(default=None, max_length=128)

    @property
    def routing_key(self) -> str:
        """Its type, or ``<type>.<value>`` for a type routed by a payload field (``EventData.ROUTED_BY``)."""
        model = CATALOGUE.get(self.type)
        return self.type if model is None else model.routing_key(self.data)

    @model_serializer(mode="wrap")
    def _without_empty_traceparent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``traceparent`` is on the wire only when there is one (an extension attribute is absent, never null)."""
        data: dict[str, Any] = handler(self)
        if data.get("traceparent") is None:
            data.pop("traceparent", None)
        return data


def new_event(data: EventData, source: str, *, correlation_id: str | None = None,
              traceparent: str | None = None) -> CloudEvent:
    """A new event of ``data``'s type.

    The correlation id defaults to that of the request or message being handled, the trace
    context to the current span's. Handlers of a batch pass both from the delivery that caused
    the event (``delivery.correlation_id``, ``delivery.traceparent``).
    """
    return CloudEvent(
        source=source, type=data.TYPE, data=data.model_dump(mode="json"),
        correlationid=correlation_id or current_correlation_id(),
        traceparent=traceparent or current_traceparent(),
    )
