"""Restarts lose nothing and fail no request (docs/kubernetes.md, "Shutdown and rolling restarts").

Two replicas of every service behind haproxy (tests/support/replicas.py: a load balancer that
health-checks ``/health/ready`` and never retries, as a Kubernetes Service). Under a steady 20 orders/s
through the gateway, every replica is restarted in turn (SIGTERM, wait until it exited, start it
again; one replica of each service at a time, as a ``helm upgrade`` rolls every Deployment at once).
Then:

- the gateway answered every order 201: no 5xx, no connection error;
- every order settled (confirmed or rejected), and each product's stock is its initial stock less
  what the confirmed orders took;
- no delivery the stopping replica had taken came back redelivered: it acks what it took and takes no
  more. Every redelivery (``microshop_events_redelivered_total`` of every replica, read just before it
  is stopped and at the end, and its log line) must fall within another replica's consumer cancel:
  those are deliveries RabbitMQ had in transit to the cancelled consumer and returned to the queue
  itself (its quorum queues count that as a delivery); they never reached the stopping process. The
  number is printed (typically 0-3 per run, against about a thousand orders);
- no outbox claim was left to expire (``microshop_outbox_takeovers_total``): a stopping relay
  publishes or releases what it holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from devtools import infra
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.api import api_client
from tests.support.metrics import parse_samples, total
from tests.support.replicas import REPLICAS, ReplicatedShop
from tests.support.saga import TERMINAL, auth, create_product, eventually, login, new_customer
from tests.support.services import ON_BUS
from tests.support.shops import shop_factory

RATE = 20.0  # orders per second
DRAIN_SECONDS = 2.0  # well over what haproxy takes to see a replica unready (two checks 0.25 s apart)
STOCK = 300
CONSUMING = ON_BUS  # the services with event consumers
RECEIPT_SLACK = 1.0  # seconds between RabbitMQ returning a delivery and the other replica logging its receipt


@pytest.fixture(scope="module")
def replicated(key_file: Path, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedShop]:
    if not infra.ensure_installed(infra.HAPROXY):
        pytest.fail("haproxy is needed (Debian package haproxy) and could not be installed; see the messages above")
    assert shutil.which("haproxy")
    shop = shop_factory()(
        key_file=key_file, namespace=f"{namespace}roll{uuid.uuid4().hex[:6]}.", out=None,
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000", "MICROSHOP_ORDER_MAX_OUTSTANDING_PER_PRODUCT": "0",
             "MICROSHOP_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
             "MICROSHOP_LOG_LEVEL": os.environ.get("SHOP_LOG", "INFO"), "MICROSHOP_LOG_FORMAT": "json"},
    )
    replicated = ReplicatedShop(shop, tmp_path_factory.mktemp("haproxy"))
    try:
        yield replicated.start()
    except BaseException:
        for name, proc in [*replicated.running(), *[("retired", p) for p in replicated.retired]]:
            print(f"--- {name} {proc.name}", *proc.lines[-30:], sep="\n")
        raise
    finally:
        replicated.stop()


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["time"]).timestamp()


async def scrape(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    r = await client.get(f"{url}/metrics")
    assert r.status_code == 200, r.text
    return parse_samples(r.text)


async def test_rolling_restart_under_load_fails_nothing(replicated: ReplicatedShop) -> None:
    shop: LocalShop = replicated.shop
    answers: list[tuple[int, str]] = []  # (status, order id or error) of every order placement
    latencies: list[tuple[float, float]] = []  # (sent at, seconds to the answer)
    quantities: dict[str, list[tuple[str, int]]] = {}
    counted: dict[str, float] = {"redelivered": 0.0, "takeovers": 0.0}
    seen: list[str] = []  # which replica counted what

    async def count(client: httpx.AsyncClient, url: str) -> None:
        samples = await scrape(client, url)
        counted["redelivered"] += total(samples, "microshop_events_redelivered_total")
        counted["takeovers"] += total(samples, "microshop_outbox_takeovers_total")
        seen.extend(f"{url} {key} {value}" for key, value in samples.items() if value and (
            key.startswith(("microshop_events_redelivered_total", "microshop_outbox_takeovers_total"))))

    async with api_client(shop, timeout=30.0) as api, \
            httpx.AsyncClient(timeout=10.0) as direct:
        admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
        buyer = await new_customer(api)
        products = [str((await create_product(api, admin, stock=STOCK, low_stock_threshold=0))["id"])
                    for _ in range(3)]
        rng = random.Random(7)
        began = time.monotonic()

        async def place() -> None:
            lines = [(p, rng.randint(1, 2)) for p in rng.sample(products, rng.randint(1, 2))]
            sent = time.monotonic()
            try:
                r = await api.post("/orders", headers=auth(buyer),
                                   json={"items": [{"product_id": p, "quantity": q} for p, q in lines]})
            except httpx.HTTPError as exc:
                answers.append((0, f"{time.monotonic() - began:.1f}s {type(exc).__name__}: {exc}"))
                return
            latencies.append((sent - began, time.monotonic() - sent))
            answers.append((r.status_code, str(r.json().get("id")) if r.status_code == 201
                            else f"{time.monotonic() - began:.1f}s {r.text[:200]}"))
            if r.status_code == 201:
                quantities[str(r.json()["id"])] = lines

        stop = asyncio.Event()

        async def load() -> None:
            started, sent, tasks = time.monotonic(), 0, set()
            while not stop.is_set():
                due = started + sent / RATE
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(place())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.gather(*tasks)

        async def restart(name: str, index: int) -> None:
            await count(direct, replicated.url(name, index))  # what it saw, before it goes
            since = time.monotonic() - began
            await asyncio.to_thread(replicated.restart, name, index)
            print(f"{name}-{index} restarted {since:.1f}s .. {time.monotonic() - began:.1f}s")

        loader = asyncio.create_task(load())
        await asyncio.sleep(2)
        for index in range(REPLICAS):
            await asyncio.gather(*(restart(name, index) for name in replicated.replicas))
            await asyncio.sleep(1)
        stop.set()
        await loader

        for second in range(0, int(max(t for t, _ in latencies)) + 1, 10):
            window = sorted(lat for t, lat in latencies if second <= t < second + 10)
            if window:
                print(f"orders sent {second:3d}-{second + 10:3d}s: {len(window)}, "
                      f"median {window[len(window) // 2]:.2f}s, max {window[-1]:.2f}s")
        failures = [a for a in answers if a[0] != 201]
        assert not failures, f"{len(failures)} of {len(answers)} orders failed: {failures[:5]} ... {failures[-3:]}"
        assert len(answers) >= RATE * 10, f"only {len(answers)} orders were placed"
        assert len(replicated.retired) == REPLICAS * len(replicated.replicas)
        assert all(proc.popen is not None and proc.popen.returncode is not None for proc in replicated.retired)

        # Every order settles; stock is exact.
        client: AsyncMongoClient[Any] = AsyncMongoClient(shop.mongo, tz_aware=True)
        try:
            orders = client["orders"]["orders"]

            async def settled() -> dict[str, str] | None:
                statuses = {str(doc["_id"]): str(doc["status"])
                            async for doc in orders.find({}, {"status": 1})}
                mine = {oid: statuses.get(oid, "missing") for oid in quantities}
                return mine if all(s in TERMINAL for s in mine.values()) else None

            statuses = await eventually(settled, timeout=60, interval=0.5, what="every order settled")
        finally:
            await client.close()
        confirmed = [oid for oid, status in statuses.items() if status == "confirmed"]
        assert confirmed, "no order was confirmed"
        for product in products:
            taken = sum(q for oid in confirmed for p, q in quantities[oid] if p == product)
            r = await api.get(f"/products/{product}")
            assert r.status_code == 200, r.text
            assert r.json()["stock"] == STOCK - taken, f"product {product}: {taken} confirmed"

        # No outbox claim expired, and no delivery was redelivered but those RabbitMQ had in transit to a
        # consumer at the moment it was cancelled (they never reached the stopping replica): every replica,
        # stopped ones included.
        for name, procs in replicated.replicas.items():
            for index, _ in enumerate(procs):
                await count(direct, replicated.url(name, index))
        assert counted["takeovers"] == 0, seen
        logs = [(proc.name.rsplit("-", 1)[0], record) for proc in [*replicated.retired, *(p for _, p in
                replicated.running())] for record in json_lines(proc.lines)]
        redelivered = [(name, at(r)) for name, r in logs if r["message"].startswith("redelivered:")]
        assert len(redelivered) == counted["redelivered"], "each redelivery is logged"
        cancelling = [(name, at(r)) for name, r in logs if r["message"].startswith("cancelling")]
        cancelled = [(name, at(r)) for name, r in logs if r["message"].startswith("consumers cancelled")]
        stopping = [p for p in replicated.retired if p.name.rsplit("-", 1)[0] in CONSUMING]
        assert len(cancelling) == len(cancelled) == len(stopping), "each stopped replica cancelled its consumers"
        windows = [(name, start, min(t for n, t in cancelled if n == name and t >= start))
                   for name, start in cancelling]
        # A delivery the stopping replica took and did not ack would come back later: a nack after its handler
        # failed, or the channel's close after "consumers stopped".
        unexplained = [(name, t) for name, t in redelivered
                       if not any(n == name and start <= t <= end + RECEIPT_SLACK for n, start, end in windows)]
        print(f"redelivered: {len(redelivered)}, all while a replica's consumers were being cancelled: "
              f"{not unexplained}")
        assert not unexplained, (unexplained, windows)
