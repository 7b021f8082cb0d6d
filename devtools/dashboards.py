"""The Grafana dashboards the charts ship, generated from the panel lists below.

    python -m devtools.dashboards          # rewrite charts/*/dashboards/*.json
    python -m devtools.dashboards --check  # exit 1 when a committed file differs

Each dashboard is a Grafana JSON model (one Prometheus datasource variable, time series and stat panels);
the charts put each file in a ConfigMap for the Grafana sidecar (``dashboards.enabled``). Queries use the
``service`` label that the chart's ServiceMonitor/PodMonitor and the local Prometheus (devtools.prometheus)
add to every target; tests/charts/test_observability.py checks every expression with ``promtool``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RATE = "$__rate_interval"
HTTP_DURATION = "microshop_http_request_duration_seconds_bucket"


@dataclass(frozen=True)
class Panel:
    title: str
    # (PromQL, legend) pairs
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    chart: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)

    @property
    def path(self) -> Path:
        return ROOT / "charts" / self.chart / "dashboards" / f"{self.uid}.json"


def _q(expr: str, legend: str = "") -> tuple[str, str]:
    return expr.replace("$RATE", RATE), legend


SHOP_OVERVIEW = Dashboard(
    uid="microshop-overview", chart="microshop", title="microshop / Shop overview",
    description="RED per service: request rate, error ratio and latency of every service's HTTP API.",
    panels=(
        Panel("Requests per second", (
            _q("sum by (service) (rate(microshop_http_requests_total[$RATE]))", "{{service}}"),), unit="reqps"),
        Panel("Error ratio (5xx)", (
            _q('sum by (service) (rate(microshop_http_requests_total{status_code=~"5.."}[$RATE]))'
               " / sum by (service) (rate(microshop_http_requests_total[$RATE]))", "{{service}}"),),
            unit="percentunit"),
        Panel("Latency p95", (
            _q(f"histogram_quantile(0.95, sum by (service, le) (rate({HTTP_DURATION}[$RATE])))",
               "{{service}}"),), unit="s"),
        Panel("Latency p50", (
            _q(f"histogram_quantile(0.5, sum by (service, le) (rate({HTTP_DURATION}[$RATE])))",
               "{{service}}"),), unit="s"),
        Panel("Slowest routes (p95)", (
            _q("topk(10, histogram_quantile(0.95, sum by (service, path, le) "
               "(rate(microshop_http_request_duration_seconds_bucket[$RATE]))))", "{{service}} {{path}}"),), unit="s"),
        Panel("Targets up", (_q("sum by (service) (up)", "{{service}}"),)),
        Panel("Rate-limited requests per second", (
            _q("sum(rate(microshop_rate_limited_total[$RATE]))", "rejected"),), unit="reqps", width=8),
        Panel("WebSocket connections", (_q("sum(microshop_websocket_connections)", "open"),), width=8),
        Panel("Password-hash queue depth", (
            _q("sum by (service) (microshop_password_hash_queue_depth)", "{{service}}"),), width=8),
    ),
)

ORDER_PIPELINE = Dashboard(
    uid="microshop-order-pipeline", chart="microshop", title="microshop / Order pipeline",
    description="Orders placed and moved through the saga, POST-to-confirmed latency, batches and outbox.",
    panels=(
        Panel("Orders placed per second", (_q("sum(rate(microshop_orders_placed_total[$RATE]))", "placed"),),
              unit="ops"),
        Panel("Order status changes per second", (
            _q("sum by (status) (rate(microshop_orders_status_changes_total[$RATE]))", "{{status}}"),), unit="ops"),
        Panel("Placed → confirmed latency", (
            _q("histogram_quantile(0.5, sum by (le) (rate(microshop_order_confirm_seconds_bucket[$RATE])))", "p50"),
            _q("histogram_quantile(0.95, sum by (le) (rate(microshop_order_confirm_seconds_bucket[$RATE])))", "p95"),
            _q("histogram_quantile(0.99, sum by (le) (rate(microshop_order_confirm_seconds_bucket[$RATE])))", "p99"),
        ), unit="s"),
        Panel("Consumer batch size", (
            _q("sum by (group) (rate(microshop_consumer_batch_size_sum[$RATE]))"
               " / sum by (group) (rate(microshop_consumer_batch_size_count[$RATE]))", "{{group}} mean"),
            _q("histogram_quantile(0.95, sum by (group, le) (rate(microshop_consumer_batch_size_bucket[$RATE])))",
               "{{group}} p95"),
        )),
        Panel("Outbox backlog (pending records)", (
            _q("sum by (service) (microshop_outbox_pending)", "{{service}}"),)),
        Panel("Stock-low events", (
            _q("sum(increase(microshop_stock_low_products_total[$RATE]))", "products reaching their threshold"),)),
    ),
)

EVENT_BACKLOG = Dashboard(
    uid="microshop-event-backlog", chart="microshop", title="microshop / Events",
    description="RabbitMQ events consumed and published, handler latency, redeliveries, dead letters, outbox age.",
    panels=(
        Panel("Consumed per second by outcome", (
            _q("sum by (service, status) (rate(faststream_received_processed_messages_total[$RATE]))",
               "{{service}} {{status}}"),), unit="ops"),
        Panel("Published per second", (
            _q("sum by (service, destination) (rate(faststream_published_messages_total[$RATE]))",
               "{{service}} → {{destination}}"),), unit="ops"),
        Panel("Handler latency p95", (
            _q("histogram_quantile(0.95, sum by (service, handler, le) "
               "(rate(faststream_received_processed_messages_duration_seconds_bucket[$RATE])))",
               "{{service}} {{handler}}"),), unit="s"),
        Panel("Handler exceptions per second", (
            _q("sum by (service, handler, exception_type) "
               "(rate(faststream_received_processed_messages_exceptions_total[$RATE]))",
               "{{handler}} {{exception_type}}"),), unit="ops"),
        Panel("Redelivered per second", (
            _q("sum by (queue) (rate(microshop_events_redelivered_total[$RATE]))", "{{queue}}"),), unit="ops"),
        Panel("Dead-lettered (increase)", (
            _q("sum by (queue) (increase(microshop_events_dead_lettered_total[$RATE]))", "{{queue}}"),)),
        Panel("Oldest unsent outbox record", (
            _q("max by (service) (microshop_outbox_oldest_age_seconds)", "{{service}}"),), unit="s"),
        Panel("Messages in process", (
            _q("sum by (service) (faststream_received_messages_in_process)", "{{service}}"),)),
    ),
)

OPERATOR = Dashboard(
    uid="microshop-operator", chart="microshop-operator", title="microshop / Operator",
    description="The Shop operator: reconciles by result, reconcile duration, Shops by phase, drift repairs.",
    panels=(
        Panel("Reconciles per second by result", (
            _q("sum by (result) (rate(microshop_operator_reconciles_total[$RATE]))", "{{result}}"),), unit="ops"),
        Panel("Reconcile duration", (
            _q("histogram_quantile(0.5, sum by (le) (rate(microshop_operator_reconcile_seconds_bucket[$RATE])))",
               "p50"),
            _q("histogram_quantile(0.95, sum by (le) (rate(microshop_operator_reconcile_seconds_bucket[$RATE])))",
               "p95"),
        ), unit="s"),
        Panel("Shops by phase", (_q("sum by (phase) (microshop_operator_shops)", "{{phase}}"),)),
        Panel("Drift repairs", (_q("sum(increase(microshop_operator_drift_repairs_total[$RATE]))", "repairs"),)),
    ),
)

DASHBOARDS = (SHOP_OVERVIEW, ORDER_PIPELINE, EVENT_BACKLOG, OPERATOR)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel(panel: Panel, index: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
                    for i, (expr, legend) in enumerate(panel.queries)],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for index, panel in enumerate(dashboard.panels):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(_panel(panel, index, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["microshop"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "graphTooltip": 1,
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def text(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def expressions(dashboard: Dashboard) -> list[str]:
    return [expr for panel in dashboard.panels for expr, _ in panel.queries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dashboards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a committed dashboard is out of date")
    args = parser.parse_args(argv)
    stale = []
    for dashboard in DASHBOARDS:
        wanted = text(dashboard)
        current = dashboard.path.read_text() if dashboard.path.is_file() else None
        if current == wanted:
            continue
        if args.check:
            stale.append(str(dashboard.path.relative_to(ROOT)))
        else:
            dashboard.path.parent.mkdir(parents=True, exist_ok=True)
            dashboard.path.write_text(wanted)
            print(f"wrote {dashboard.path.relative_to(ROOT)}")
    if stale:
        print("out of date (run python -m devtools.dashboards):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
