"""Metrics and tracing in the kit (issue 13), without any network: apps under the test client, spans in memory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar import get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import route_label
from microshop_operator.metrics import DRIFT_REPAIRS, SHOPS, DriftTracker, shop_phase
from shopkit import tracing
from shopkit.app import Resources, Service, Uses
from shopkit.batching import Batcher
from shopkit.contracts.events import StockLow
from shopkit.errors import problem_body
from shopkit.events import CloudEvent, new_event
from shopkit.logging import ConsoleFormatter, ContextFilter
from shopkit.settings import ServiceSettings
from tests.support.metrics import parse_samples, total

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class NoDeps:
    pass


@get("/things/{thing_id:str}", sync_to_thread=False)
def thing(thing_id: FromPath[str]) -> dict[str, str]:
    return {"id": thing_id}


def _app(**settings: Any) -> Any:
    async def build(_: Resources[ServiceSettings]) -> AsyncIterator[NoDeps]:
        yield NoDeps()

    return Service(ServiceSettings, ServiceSettings(service_name="unit", **settings), title="t", description="d",
                   routes=[thing], build=build, uses=Uses(mongo=False)).app()


async def test_metrics_page_labels_requests_by_route_template_never_by_id() -> None:
    async with AsyncTestClient(_app()) as client:
        for _ in range(3):
            assert (await client.get("/things/6b0974170000000000000001")).status_code == 200
        page = await client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    samples = parse_samples(page.text)
    assert total(samples, "microshop_http_requests_total", app_name="unit", method="GET",
                 path="/things/{thing_id}", status_code="200") >= 3
    assert total(samples, "microshop_http_request_duration_seconds_count", path="/things/{thing_id}") >= 3
    assert "6b0974170000000000000001" not in page.text
    assert "/metrics" not in {k for k in samples if 'path="/metrics"' in k}  # the page does not count itself


async def test_metrics_can_be_turned_off() -> None:
    async with AsyncTestClient(_app(metrics_enabled=False)) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_gateway_labels_proxied_paths_by_template_or_service_prefix() -> None:
    def scope(path: str) -> dict[str, Any]:
        return {"path_template": "", "raw_path": path.encode(), "path": path}

    assert route_label(scope("/api/products/6b0974170000000000000001")) == "/api/products/{id}"
    assert route_label(scope("/api/orders/6b0974170000000000000001")) == "/api/orders"
    assert route_label(scope("/api/no-such-thing/42")) == "/api/{unknown}"
    assert route_label({"path_template": "/api/health", "path": "/api/health"}) == "/api/health"


def test_batcher_reports_each_batch_size() -> None:
    seen: list[int] = []

    async def flush(items: Any) -> list[None]:
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush, on_batch=seen.append)
    import asyncio

    async def go() -> None:
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    asyncio.run(go())
    assert sum(seen) == 5


def test_tracing_off_costs_nothing_and_leaves_no_trace_on_the_wire() -> None:
    assert not tracing.tracing_enabled()
    assert tracing.current_traceparent() is None and tracing.current_trace_id() is None
    event = new_event(StockLow(product_id="p1", sku="s", name="n", stock=1, low_stock_threshold=2), "/t")
    assert event.traceparent is None and "traceparent" not in event.model_dump(mode="json")
    with tracing.within(TRACEPARENT), tracing.batch_span("x", [TRACEPARENT]):
        assert tracing.current_traceparent() is None


def test_an_events_traceparent_is_on_the_wire_and_round_trips() -> None:
    event = CloudEvent(source="/t", type="stock_low", traceparent=TRACEPARENT)
    wire = event.model_dump(mode="json")
    assert wire["traceparent"] == TRACEPARENT
    assert CloudEvent.model_validate(wire).traceparent == TRACEPARENT


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Tracing on in this process, spans kept in memory (the global provider is set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing._sampler(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_enabled", True)
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    return exporter


def test_events_logs_and_problems_carry_the_trace(spans: InMemorySpanExporter) -> None:
    with tracing.within(TRACEPARENT):
        event = new_event(StockLow(product_id="p1", sku="s", name="n", stock=1, low_stock_threshold=2), "/t")
        body = problem_body(404, "gone")
        record = logging.makeLogRecord({"msg": "hello"})
        ContextFilter().filter(record)
    assert event.traceparent == TRACEPARENT
    assert body["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert record.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert "trace=0af7651916cd43dd8448eb211c80319c" in ConsoleFormatter().format(record)  # console lines too


def test_a_batch_span_continues_its_first_deliverys_trace_and_links_the_others(
        spans: InMemorySpanExporter) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    with tracing.batch_span("orders.stock_reserved", [TRACEPARENT, None, other]):
        caused = tracing.current_traceparent()
    assert caused is not None and caused.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    (span,) = spans.get_finished_spans()
    assert span.parent is not None and span.parent.span_id == int("b7ad6b7169203331", 16)
    assert [format(link.context.trace_id, "032x") for link in span.links] == ["11111111111111111111111111111111"]


def test_client_calls_never_start_a_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("t")
    with tracer.start_as_current_span("orders.find", kind=trace.SpanKind.CLIENT) as root:
        assert not root.is_recording()
    with tracing.within(TRACEPARENT), tracer.start_as_current_span("orders.find", kind=trace.SpanKind.CLIENT) as child:
        assert child.is_recording()


def test_operator_drift_tracker_counts_only_changes_made_by_someone_else() -> None:
    drift = DriftTracker()
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "n", "name": "d"},
           "spec": {"replicas": 1}}

    def live(uid: str, generation: int) -> dict[str, Any]:
        return {"metadata": {"uid": uid, "generation": generation, "resourceVersion": str(generation * 10)}}

    before = DRIFT_REPAIRS._value.get()
    assert not drift.applied(obj, live("u1", 1))  # first apply
    assert not drift.applied(obj, live("u1", 1))  # a resync, nothing changed (status updates do not count)
    assert drift.applied(obj, live("u1", 3))  # someone edited the spec (2); the apply put it back (3)
    assert drift.applied(obj, live("u2", 1))  # someone deleted it; the apply re-created it
    assert not drift.applied({**obj, "spec": {"replicas": 2}}, live("u2", 2))  # our own change
    assert DRIFT_REPAIRS._value.get() - before == 2


def test_operator_shops_by_phase() -> None:
    shop_phase("a", "Ready")
    shop_phase("b", "Ready")
    shop_phase("c", "Degraded")
    shop_phase("b", None)
    assert SHOPS.labels("Ready")._value.get() == 1 and SHOPS.labels("Degraded")._value.get() == 1
    shop_phase("a", None)
    shop_phase("c", None)


async def test_bus_counts_dead_letters_and_batch_sizes_per_queue() -> None:
    from faststream.rabbit import TestRabbitBroker

    from shopkit.messaging.bus import EventBus, create_broker
    from shopkit.metrics import BATCH_SIZE, EVENTS_DEAD_LETTERED

    settings = ServiceSettings(service_name="obs", namespace="obs.")
    bus = EventBus(settings, create_broker(settings), retry_backoff_seconds=0)

    async def handle(batch: Any) -> None:
        return None

    bus.subscribe(StockLow, handle)
    dead = EVENTS_DEAD_LETTERED.labels("obs.stock_low")
    sizes = BATCH_SIZE.labels("obs.stock_low")
    dead_before, batches_before = dead._value.get(), sum(b.get() for b in sizes._buckets)
    async with TestRabbitBroker(bus.broker):
        await bus.publish(CloudEvent(source="t", type="stock_low", data={"product_id": "p1", "stock": -5}))
        await bus.publish(new_event(StockLow(product_id="p1", stock=1), "t"))
    assert dead._value.get() - dead_before == 1  # the malformed one, labelled by queue (no namespace)
    assert sum(b.get() for b in sizes._buckets) - batches_before == 1
