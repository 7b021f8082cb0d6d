"""OpenTelemetry tracing: one trace per request, through every event it causes (docs/observability.md).

Off unless ``MICROSHOP_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) names a collector; off,
the helpers here return ``None`` after one flag check. Since events go through the outbox and
consumers work in batches, the trace context travels with the data too: a ``Delivery`` keeps its
consume span's ``traceparent``, and an event carries the one of the work that created it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger("shopkit.tracing")

_enabled = False
_provider: Any = None


def otlp_endpoint(configured: str | None) -> str | None:
    """The OTLP/HTTP base URL: ``MICROSHOP_OTLP_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else none."""
    return configured or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def tracing_enabled() -> bool:
    return _enabled


def setup_tracing(service: str, endpoint: str | None, sample_ratio: float = 1.0) -> bool:
    """Install tracing for this process (once; later calls keep the first set-up). Returns whether it is on."""
    global _enabled, _provider
    endpoint = otlp_endpoint(endpoint)
    if _enabled or not endpoint:
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "microshop"}),
                              sampler=_sampler(sample_ratio))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    _enabled = True
    log.info("tracing on: OTLP/HTTP to %s, sampling %.0f %% of traces", endpoint, sample_ratio * 100)
    return True


def shutdown_tracing() -> None:
    """Flush what is buffered (at shutdown; the batch processor would otherwise drop it)."""
    if _provider is not None:
        _provider.force_flush(5000)


def _sampler(ratio: float) -> Any:
    """Sample ``ratio`` of new traces, follow the parent otherwise, and never start a trace with a client call.

    A database or Redis call without a parent is background work (the outbox relay's polls,
    readiness checks, the rate limiter's script load): a trace of its own would be noise.
    """
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import SpanKind

    class NoClientRoots(Sampler):
        def __init__(self, root: Sampler) -> None:
            self.root = root

        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                          attributes: Any = None, links: Any = None, trace_state: Any = None) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return self.root.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"NoClientRoots{{{self.root.get_description()}}}"

    return ParentBased(root=NoClientRoots(TraceIdRatioBased(ratio)))


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` (tracing off, no span)."""
    if not _enabled:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    """The current trace id (32 hex digits) for logs and problem+json, or ``None``."""
    if not _enabled:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextlib.contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """Run the block as a child of ``traceparent`` (a no-op without one or with tracing off)."""
    if not _enabled or not traceparent:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def batch_span(name: str, traceparents: Sequence[str | None]) -> Iterator[None]:
    """A span for one batch of deliveries: a child of the first delivery's trace, linked to the others'.

    What the flush does (database calls, events without an explicit cause) belongs to that span.
    """
    if not _enabled or not any(traceparents):
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    contexts = [trace.get_current_span(extract({"traceparent": tp})).get_span_context() for tp in traceparents if tp]
    parent = extract({"traceparent": next(tp for tp in traceparents if tp)})
    tracer = trace.get_tracer("shopkit.batching")
    with tracer.start_as_current_span(f"{name} batch", context=parent,
                                      links=[trace.Link(c) for c in contexts[1:]],
                                      attributes={"messaging.batch.message_count": len(traceparents)}):
        yield


def broker_middleware() -> Any:
    """FastStream's telemetry middleware (consume and publish spans; ``traceparent`` in the AMQP headers)."""
    from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware

    return RabbitTelemetryMiddleware(tracer_provider=_provider)


def http_middleware(route_label: Callable[[Any], str],
                    exclude: Sequence[str] = ("^/health/", "^/metrics$")) -> list[Any]:
    """Litestar's OpenTelemetry middleware (server spans; the context from the caller's ``traceparent``).

    Its span starts before routing, named by the method alone (never the raw path: ids would make
    every span name unique); a route-level middleware then renames it ``<method> <route template>``.
    """
    from litestar.middleware import DefineMiddleware
    from litestar.plugins.opentelemetry import OpenTelemetryConfig

    def by_method(scope: Any) -> tuple[str, dict[str, Any]]:
        return str(scope.get("method") or scope.get("type") or "HTTP"), {}

    config = OpenTelemetryConfig(tracer_provider=_provider, exclude=list(exclude), exclude_spans=["receive", "send"],
                                 scope_span_details_extractor=by_method)
    return [config.middleware, DefineMiddleware(_RouteSpanName, route_label=route_label)]


class _RouteSpanName:
    """Names the server span after the matched route (``GET /products/{product_id}``)."""

    def __init__(self, app: Any, route_label: Callable[[Any], str]) -> None:
        self.app = app
        self.route_label = route_label

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            route = self.route_label(scope)
            span.update_name(f"{scope.get('method') or 'WEBSOCKET'} {route}")
            span.set_attribute("http.route", route)
        await self.app(scope, receive, send)
