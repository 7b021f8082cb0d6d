"""Tracing (issue 13): one trace from the HTTP request through every event it causes, exported over OTLP/HTTP.

A shop of its own (own SecantusDB, own namespace, nothing shared with the session shop) exports to
a small OTLP/HTTP receiver here that decodes the ``ExportTraceServiceRequest`` protobufs.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devtools.broker_cleanup import delete_namespace
from devtools.procs import free_port
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop, ensure_private_key
from tests.support.api import api_client
from tests.support.saga import auth, create_product, eventually, login, new_customer, place_order, wait_for_status
from tests.support.shops import shop_factory


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, str]


class Receiver:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` with protobuf bodies."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "?")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(Span(
                        service=service, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(), name=s.name, kind=s.kind,
                        attributes={a.key: str(getattr(a.value, a.value.WhichOneof("value") or "string_value"))
                                    for a in s.attributes},
                    ))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture(scope="module")
def traced_shop(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShop]:
    """A dedicated shop exporting every trace to ``receiver``: its own database, namespace and signing key."""
    namespace = f"tr{uuid.uuid4().hex[:8]}."
    local = shop_factory()(
        key_file=ensure_private_key(tmp_path_factory.mktemp("traced") / "jwt-private.pem"), namespace=namespace,
        out=None,
        env={"MICROSHOP_OTLP_ENDPOINT": receiver.url, "MICROSHOP_TRACE_SAMPLE_RATIO": "1.0",
             "OTEL_BSP_SCHEDULE_DELAY": "200", "MICROSHOP_RATE_LIMIT_REQUESTS": "1000000"},
    )
    try:
        local.start(timeout=90)
        yield local
    finally:
        local.stop()
        delete_namespace("amqp://guest:guest@127.0.0.1:5672/", namespace)


async def test_one_trace_spans_gateway_orders_products_and_every_consumer(
        traced_shop: LocalShop, receiver: Receiver) -> None:
    async with api_client(traced_shop) as api:
        admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
        buyer = await new_customer(api)
        product = await create_product(api, admin, stock=5)
        order = await place_order(api, buyer, [(product["id"], 1)])
        assert (await wait_for_status(api, buyer, order["id"]))["status"] == "confirmed"

        def order_trace() -> str | None:
            posts = [s for s in receiver.spans if s.service == "gateway" and not s.parent_id
                     and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"
                     and "/api/orders" in s.attributes.get("url.path", s.attributes.get("http.target", ""))]
            return posts[-1].trace_id if posts else None

        wanted = {"gateway", "orders", "products", "alerts", "analytics"}

        async def complete() -> bool:
            trace_id = order_trace()
            if trace_id is None:
                return False
            spans = receiver.trace(trace_id)
            by_service: dict[str, set[str]] = defaultdict(set)
            for s in spans:
                by_service[s.service].add(s.name)
            consumers = {s.service for s in spans if s.kind == 5}  # SPAN_KIND_CONSUMER
            # A parent ends (and is exported) after its children: wait until every parent arrived too.
            ids = {s.span_id for s in spans}
            whole = all(s.parent_id in ids for s in spans if s.parent_id)
            return wanted <= set(by_service) and {"products", "orders", "alerts", "analytics"} <= consumers and whole

        await eventually(complete, timeout=30, interval=0.2, what="one trace through every service")
        trace_id = order_trace()
        assert trace_id is not None
        spans = receiver.trace(trace_id)
        services = {s.service for s in spans}
        assert services >= {"gateway", "orders", "products", "alerts", "analytics"}, services
        # One root: the gateway's server span; every other span has its parent in the trace.
        ids = {s.span_id for s in spans}
        roots = [s for s in spans if not s.parent_id]
        assert [r.service for r in roots] == ["gateway"], roots
        assert all(s.parent_id in ids for s in spans if s.parent_id), "a span's parent is missing from the trace"
        # Mongo calls are child spans (orders inserts the order; products reserves the stock).
        assert any(s.service == "orders" and s.attributes.get("db.system", s.attributes.get("db.system.name"))
                   == "mongodb" for s in spans)
        # products → orders by RabbitMQ: the stock reply's consumer span is in the same trace.
        assert any(s.service == "orders" and s.kind == 5 and "stock_reserved" in s.name for s in spans), \
            sorted((s.service, s.name) for s in spans)

        # Span names are bounded: route templates, never the ids of the path.
        assert not [s.name for s in spans if re.search(r"[0-9a-f]{24}", s.name)]
        assert any(s.service == "products" and s.name.startswith("GET /products/{") for s in spans), \
            sorted({(s.service, s.name) for s in spans})

        # The trace id is in problem+json errors too.
        r = await api.get(f"/orders/{uuid.uuid4().hex[:24]}", headers=auth(buyer))
        assert r.status_code == 404
        assert len(r.json().get("trace_id", "")) == 32, r.json()
