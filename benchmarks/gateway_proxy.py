"""Gateway overhead: the same GET straight to a service and through the gateway, side by side.

Starts SecantusDB, the customers service and three gateways as processes (``LocalShop``): one as
the shop runs it, one with the rate limiter failing open (Redis pointed at a closed port) to
isolate the cost of the Lua call, and one with observability off (``MICROSHOP_METRICS_ENABLED=false``
and no OTLP endpoint) to measure what metrics and tracing (exporter off, as shipped) cost.
Drives ``GET /auth/jwks`` (no database work) with a fixed number of concurrent keep-alive
connections, alternating the targets round by round, and prints throughput, latency, the
gateway's and the service's CPU per request (process CPU times via psutil, so it holds up on a busy machine)
and the ratios. Target (issue 13): observability costs the gateway at most 10 % CPU per request.

    uv run python benchmarks/gateway_proxy.py [--seconds 3] [--concurrency 16]

Absolute numbers depend on the machine (the load generator shares its cores); compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from devtools.broker_cleanup import delete_namespace
from devtools.procs import Proc, free_port
from devtools.shop import LocalShop, ensure_private_key


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU of a child process (psutil)."""
    assert proc.popen is not None
    times = psutil.Process(proc.popen.pid).cpu_times()
    return float(times.user + times.system)


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    service_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def add(self, other: Result) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.service_cpu += other.service_cpu
        self.latencies.extend(other.latencies)

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def drive(url: str, seconds: float, concurrency: int, proc: Proc | None, service: Proc) -> Result:
    result = Result()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(concurrency):  # warm the connections
            async with session.get(url) as resp:
                await resp.read()
        cpu_before = cpu_seconds(proc) if proc else 0.0
        service_before = cpu_seconds(service)
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url} answered {resp.status}")
                result.latencies.append(time.perf_counter() - t0)
                result.requests += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
        result.cpu = (cpu_seconds(proc) - cpu_before) if proc else 0.0
        result.service_cpu = cpu_seconds(service) - service_before
    return result


OBSERVABILITY_TARGET = 1.10  # issue 13: metrics + tracing (exporter off) within 10 % of everything off


async def run(seconds: float, concurrency: int, rounds: int, shop: LocalShop, plain: Proc, plain_url: str,
              dark: Proc, dark_url: str) -> None:
    targets = {
        "direct (customers)": (f"{shop.url('customers')}/auth/jwks", None),
        "via gateway": (f"{shop.url('gateway')}/api/auth/jwks", shop.procs["gateway"]),
        "via gateway, no limiter": (f"{plain_url}/api/auth/jwks", plain),
        "via gateway, obs. off": (f"{dark_url}/api/auth/jwks", dark),
    }
    totals = {name: Result() for name in targets}
    for _ in range(rounds):
        for name, (url, proc) in targets.items():
            totals[name].add(await drive(url, seconds, concurrency, proc, shop.procs["customers"]))

    direct = totals["direct (customers)"]
    print(f"\nGET /auth/jwks, {concurrency} connections, {rounds} x {seconds:g}s per target (interleaved)")
    print(f"{'target':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'gw CPU ms/req':>16}{'svc CPU ms/req':>16}")
    for name, r in totals.items():
        cpu = f"{r.cpu / r.requests * 1000:.3f}" if r.cpu and r.requests else "-"
        svc = f"{r.service_cpu / r.requests * 1000:.3f}" if r.requests else "-"
        print(f"{name:<26}{r.rps:>10.0f}{r.p(0.5):>10.2f}{r.p(0.99):>10.2f}{cpu:>16}{svc:>16}")
    gw, plain_r = totals["via gateway"], totals["via gateway, no limiter"]
    print(f"\nthroughput ratio gateway / direct: {gw.rps / direct.rps:.2f}")
    print(f"throughput ratio gateway without limiter / direct: {plain_r.rps / direct.rps:.2f}")
    if gw.requests and plain_r.requests:
        lua = (gw.cpu / gw.requests - plain_r.cpu / plain_r.requests) * 1000
        print(f"rate-limit Lua call, gateway CPU per request: {lua:+.3f} ms")
    if direct.requests and gw.requests and direct.service_cpu:
        ratio = (gw.cpu / gw.requests) / (direct.service_cpu / direct.requests)
        print(f"gateway CPU per request / service CPU per request: {ratio:.2f}")
    print(f"added p50 latency: {gw.p(0.5) - direct.p(0.5):.2f} ms")
    off = totals["via gateway, obs. off"]
    if gw.requests and off.requests and off.cpu:
        ratio = (gw.cpu / gw.requests) / (off.cpu / off.requests)
        verdict = "PASS" if ratio <= OBSERVABILITY_TARGET else "FAIL"
        print(f"observability (metrics + tracing, exporter off) on / off, gateway CPU per request: {ratio:.3f} "
              f"({(gw.cpu / gw.requests - off.cpu / off.requests) * 1000:+.3f} ms; target <= "
              f"{OBSERVABILITY_TARGET:.2f}) {verdict}")
        print(f"observability on / off, throughput: {gw.rps / off.rps:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    shop = LocalShop(
        key_file=ensure_private_key(state / "jwt.pem"),
        namespace=f"bench{os.getpid()}.",
        services=["customers", "gateway"],
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000000", "MICROSHOP_LOG_LEVEL": "WARNING"},
        out=None,
    )
    plain: Proc | None = None
    dark: Proc | None = None
    try:
        shop.start(timeout=90)
        plain_port = free_port()
        plain = shop.proc_for("gateway")
        plain.name = "gateway-no-limiter"
        plain.env = {**plain.env, "MICROSHOP_PORT": str(plain_port),
                     "MICROSHOP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        plain.ready_url = f"http://127.0.0.1:{plain_port}/health/ready"
        shop.group.add(plain).start().wait_ready(60)
        dark_port = free_port()
        dark = shop.proc_for("gateway")
        dark.name = "gateway-observability-off"
        dark.env = {**dark.env, "MICROSHOP_PORT": str(dark_port), "MICROSHOP_METRICS_ENABLED": "false",
                    "MICROSHOP_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
        dark.ready_url = f"http://127.0.0.1:{dark_port}/health/ready"
        shop.group.add(dark).start().wait_ready(60)
        asyncio.run(run(args.seconds, args.concurrency, args.rounds, shop, plain, f"http://127.0.0.1:{plain_port}",
                        dark, f"http://127.0.0.1:{dark_port}"))
    finally:
        shop.stop()
        delete_namespace("amqp://guest:guest@127.0.0.1:5672/", shop.namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
