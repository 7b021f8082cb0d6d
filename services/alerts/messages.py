"""What the alerts service tells people: alert texts and the JSON frames of the WebSocket.

Every frame is ``{"type", "data"}``:

* ``connected`` — once, after the socket is subscribed (``data``: ``user_id``, ``role``, ``heartbeat_seconds``);
* ``order_status`` — an order of the user changed status (``order_id``, ``status``, ``previous_status``,
  ``total``, ``currency``, ``at``);
* ``alert`` — a new alert for the user (or for every admin), shaped like an item of ``GET /alerts``;
* ``ping`` — heartbeat when nothing else was sent for ``heartbeat_seconds`` (``data``: ``at``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

CONNECTED = "connected"
ORDER_STATUS = "order_status"
ALERT = "alert"
PING = "ping"

# Alert types (the ``type`` of an item of GET /alerts).
ALERT_ORDER_STATUS = "order_status"
ALERT_STOCK_LOW = "stock_low"

ORDER_TEXT: dict[str, str] = {
    "pending": "Order {ref} received; we are reserving the stock.",
    "confirmed": "Order {ref} is confirmed.",
    "rejected": "Order {ref} could not be placed: not enough stock.",
    "cancelled": "Order {ref} was cancelled.",
    "shipped": "Order {ref} has shipped.",
    "delivered": "Order {ref} was delivered.",
}


def order_message(order_id: str, status: str) -> str:
    template = ORDER_TEXT.get(status, "Order {ref} is now " + status + ".")
    return template.format(ref=order_id[-8:])


def stock_low_message(name: str, sku: str | None, stock: int, threshold: int | None) -> str:
    label = f"{name} ({sku})" if sku else name
    limit = f" (threshold {threshold})" if threshold is not None else ""
    return f"Stock low: {label} has {stock} left{limit}."


def frame(type_: str, data: dict[str, Any]) -> str:
    """A WebSocket frame as text (serialised once, sent to every socket it concerns)."""
    return json.dumps({"type": type_, "data": data}, separators=(",", ":"), default=str)


def ping_frame() -> str:
    return frame(PING, {"at": datetime.now(UTC).isoformat()})
