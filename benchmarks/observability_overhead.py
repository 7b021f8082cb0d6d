"""What metrics and tracing (exporter off, as shipped) cost per request, per delivery and per publish.

The end-to-end comparisons (``gateway_proxy.py``, ``order_pipeline.py``) run the shop as processes
and are at the mercy of whatever else the machine does. This one drives the instrumentation the
kit installs, in one process, and measures it with ``time.process_time`` (this process's CPU, not
wall time), so its numbers hold on a busy machine:

* HTTP: the kit's Litestar Prometheus middleware around a trivial ASGI app, vs the app alone;
* events: FastStream's ``RabbitPrometheusMiddleware`` consume and publish scopes around a no-op,
  vs the no-op alone; plus the kit's own per-delivery work (redelivery check, trace context).

Prints µs of CPU for each, and what they add up to per order of the order pipeline (about 12
deliveries, 6 publishes and 2 HTTP requests: gateway and orders) against issue 10's budget of
25 ms CPU per order (issue 13's target: within 10 %).

    uv run python benchmarks/observability_overhead.py [--n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from faststream.message import SourceType
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.response import PublishType
from prometheus_client import CollectorRegistry

from shopkit import tracing
from shopkit.messaging import bus
from shopkit.metrics import EVENTS_REDELIVERED, RouteTemplateMiddleware, ShopPrometheusConfig

PER_ORDER = {"deliveries": 12, "publishes": 6, "requests": 2}
BUDGET_MS = 25.0  # issue 10: CPU per confirmed order
TARGET = 0.10  # issue 13: within 10 %


async def cpu_us(call: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(min(n, 1000)):
        await call()
    t0 = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - t0) / n * 1e6


async def measure(n: int) -> dict[str, tuple[float, float]]:
    # HTTP: the middleware as the kit configures it.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    config = ShopPrometheusConfig(app_name="bench", prefix="bench_http", group_path=True,
                                  middleware_class=RouteTemplateMiddleware)
    middleware = RouteTemplateMiddleware(app, config)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(_: Any) -> None:
        return None

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": "/orders/6b0974170000000000000001",
                "path_template": "/orders/{order_id}", "raw_path": b"/orders/6b0974170000000000000001",
                "headers": [], "query_string": b"", "app": None, "state": {}, "root_path": "", "scheme": "http",
                "server": ("127.0.0.1", 8003)}

    # Events: FastStream's middleware, as create_broker installs it (one instance per message).
    events = RabbitPrometheusMiddleware(registry=CollectorRegistry(), app_name="bench")
    message = SimpleNamespace(raw_message=SimpleNamespace(exchange="order_exchange", routing_key="order_created",
                                                          headers={}, redelivered=False),
                              body=b"x" * 600, committed=None, source_type=SourceType.CONSUME)
    command = SimpleNamespace(exchange=SimpleNamespace(name="order_exchange"), destination="order_created",
                              publish_type=PublishType.PUBLISH, batch_bodies=(b"x",))
    redelivered = EVENTS_REDELIVERED.labels("bench.order_created")

    async def noop(_: Any = None) -> None:
        return None

    async def consume() -> None:
        await events(None, context=None).consume_scope(noop, message)  # type: ignore[arg-type]

    async def publish() -> None:
        await events(None, context=None).publish_scope(noop, command)  # type: ignore[arg-type]

    async def kit_delivery() -> None:  # what shopkit.messaging.bus adds per delivery
        if bus._redelivered(message):  # type: ignore[arg-type]
            redelivered.inc()
        tracing.current_traceparent()

    return {
        "HTTP request (Litestar middleware)": (await cpu_us(lambda: app(scope(), receive, send), n),
                                               await cpu_us(lambda: middleware(scope(), receive, send), n)),
        "delivery (FastStream middleware)": (await cpu_us(noop, n), await cpu_us(consume, n)),
        "delivery (kit: redelivery, trace)": (await cpu_us(noop, n), await cpu_us(kit_delivery, n)),
        "publish (FastStream middleware)": (await cpu_us(noop, n), await cpu_us(publish, n)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000, help="calls per measurement (default 20000)")
    args = parser.parse_args()
    results = asyncio.run(measure(args.n))
    print("\nobservability overhead, process CPU per call (tracing exporter off, as shipped)")
    print(f"{'':<38}{'without µs':>12}{'with µs':>10}{'added µs':>10}")
    added: dict[str, float] = {}
    for name, (off, on) in results.items():
        added[name] = on - off
        print(f"{name:<38}{off:>12.2f}{on:>10.2f}{on - off:>+10.2f}")
    per_order_ms = (PER_ORDER["requests"] * added["HTTP request (Litestar middleware)"]
                    + PER_ORDER["deliveries"] * (added["delivery (FastStream middleware)"]
                                                 + added["delivery (kit: redelivery, trace)"])
                    + PER_ORDER["publishes"] * added["publish (FastStream middleware)"]) / 1000
    share = per_order_ms / BUDGET_MS
    verdict = "PASS" if share <= TARGET else "FAIL"
    print(f"per order ({PER_ORDER['requests']} requests, {PER_ORDER['deliveries']} deliveries, "
          f"{PER_ORDER['publishes']} publishes): {per_order_ms:.3f} ms CPU = {share:.1%} of the {BUDGET_MS:.0f} ms "
          f"budget per order (target <= {TARGET:.0%}) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
