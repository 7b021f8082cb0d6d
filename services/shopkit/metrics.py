"""Prometheus metrics: the kit's and the shop's own series (docs/observability.md, "Metrics reference").

Every service serves ``GET /metrics`` on its own port (not through the gateway, whose proxy only
routes ``/api/<service prefix>``). HTTP series come from Litestar's Prometheus plugin (route
templates, never raw paths), event series from FastStream's RabbitMQ Prometheus middleware; the
series below are the shop's own. Labels are bounded: queue/consumer-group names, statuses, never
ids. ``MICROSHOP_METRICS_ENABLED=false`` removes the HTTP and broker middlewares and ``/metrics``
(the series below still count, which costs a few hundred nanoseconds per update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.middleware import DefineMiddleware
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController, PrometheusMiddleware
from litestar.types import Scope
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no ``*_created`` twin of every counter: half the series, nothing lost

HTTP_PREFIX = "microshop_http"
EVENTS_PREFIX = "faststream"

# Events (shopkit.messaging.bus, shopkit.messaging.outbox)
EVENTS_REDELIVERED = Counter(
    "microshop_events_redelivered",
    "Deliveries that RabbitMQ had delivered before (a handler failed or a consumer died)", ["queue"])
EVENTS_DEAD_LETTERED = Counter(
    "microshop_events_dead_lettered",
    "Deliveries sent to the dead-letter queue: malformed events, and failures past the delivery limit", ["queue"])
DEAD_LETTERS = Gauge("microshop_dead_letters", "Dead letters waiting in a consumer queue's DLQ (as last polled)",
                     ["queue"])
UNROUTABLE_EVENTS = Gauge("microshop_unroutable_events",
                          "Events kept in the unroutable queue: published where no queue was bound (as last polled)")
OUTBOX_PENDING = Gauge("microshop_outbox_pending", "Outbox records not yet published (as the relay last saw them)")
OUTBOX_OLDEST_AGE = Gauge("microshop_outbox_oldest_age_seconds",
                          "Age of the oldest unpublished outbox record when the relay last looked (0: none)")
OUTBOX_TAKEOVERS = Counter(
    "microshop_outbox_takeovers",
    "Outbox records claimed from a relay whose lease had expired (it died or stalled; it may have published them)")
OUTBOX_LOST_CLAIMS = Counter(
    "microshop_outbox_lost_claims",
    "Outbox records a relay published after its lease expired and another relay had claimed them (published twice,"
    " unless that relay failed first)")
TRANSACTION_RETRIES = Counter(
    "microshop_transaction_retries",
    "Transactions run again, by service and reason: ``write-conflict`` (and other transient errors: the driver's"
    " with_transaction reran the work), ``commit`` (the commit failed transiently), ``duplicate-marker`` (a"
    " redelivery in the batch: markers read first), ``duplicate-key`` (lost a race to create a document),"
    " ``consumer`` (the consumer held a delivery and retried its batch after a transient failure)",
    ["service", "reason"])
BATCH_SIZE = Histogram("microshop_consumer_batch_size", "Deliveries per committed batch, per consumer group",
                       ["group"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

# Business
ORDERS_PLACED = Counter("microshop_orders_placed", "Orders placed (accepted as pending)")
ORDER_STATUS_CHANGES = Counter("microshop_orders_status_changes", "Order status changes committed, by new status",
                               ["status"])
ORDER_CONFIRM_SECONDS = Histogram(
    "microshop_order_confirm_seconds", "From an order's creation to its confirmation by the saga",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
for _status in ("confirmed", "rejected", "cancelled", "shipped", "delivered"):
    ORDER_STATUS_CHANGES.labels(_status)  # every series from the start (rate() needs its zero)
STOCK_LOW = Counter("microshop_stock_low_products", "stock_low events: a product's stock fell to its threshold")
WEBSOCKET_CONNECTIONS = Gauge("microshop_websocket_connections", "Open alert WebSockets on this process")
RATE_LIMITED = Counter("microshop_rate_limited", "Requests the gateway refused with 429")
PASSWORD_HASH_QUEUE = Gauge("microshop_password_hash_queue_depth",
                            "Password hashes (argon2) queued or in progress on this process")


def password_hash_queue_depth(depth: int) -> None:
    """The customers service reports its hash pool's depth (queued + running) here."""
    PASSWORD_HASH_QUEUE.set(depth)


RouteLabel = Callable[[Scope], str]
"""A request's route for labels and span names: a bounded template, never the raw path."""


def route_template(scope: Scope) -> str:
    return str(scope.get("path_template") or "other")


class RouteTemplateMiddleware(PrometheusMiddleware):
    """Litestar's middleware, labelled by the matched route's template (``/orders/{order_id}``).

    A service may pass ``route_label`` (the gateway does: its proxy is one mount, so it labels by
    the public path's service prefix instead of ``/api``).
    """

    def _get_default_labels(self, request: Request[Any, Any, Any]) -> dict[str, str | int | float]:
        route_label = getattr(self._config, "route_label", None) or route_template
        return {
            "method": request.method if request.scope["type"] == "http" else "websocket",
            "path": route_label(request.scope),
            "status_code": 200,
            "app_name": self._config.app_name,
        }


@dataclass
class ShopPrometheusConfig(PrometheusConfig):
    route_label: RouteLabel | None = None


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def http_metrics(service: str, route_label: RouteLabel | None = None) -> DefineMiddleware:
    """The HTTP middleware of a service (requests by route template, method and status; durations)."""
    config = ShopPrometheusConfig(
        app_name=service, prefix=HTTP_PREFIX, group_path=True, exclude=["^/metrics$"],
        middleware_class=RouteTemplateMiddleware,
        buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], route_label=route_label,
    )
    return config.middleware


def broker_metrics(service: str) -> Any:
    """FastStream's RabbitMQ middleware: consumed/published by destination (exchange.routing key) and status."""
    from faststream.rabbit.prometheus import RabbitPrometheusMiddleware

    return RabbitPrometheusMiddleware(registry=REGISTRY, app_name=service, metrics_prefix=EVENTS_PREFIX)


__all__ = [
    "BATCH_SIZE", "EVENTS_DEAD_LETTERED", "EVENTS_REDELIVERED", "ORDERS_PLACED", "ORDER_CONFIRM_SECONDS",
    "ORDER_STATUS_CHANGES", "OUTBOX_LOST_CLAIMS", "OUTBOX_OLDEST_AGE", "OUTBOX_PENDING", "OUTBOX_TAKEOVERS",
    "PASSWORD_HASH_QUEUE", "RATE_LIMITED", "STOCK_LOW", "WEBSOCKET_CONNECTIONS", "MetricsController", "broker_metrics",
    "http_metrics", "password_hash_queue_depth",
]
