# ruff: noqa: S311 - load-test randomness, not cryptography
"""Locust traffic for microshop, through the gateway's public API only (``--host``, e.g. http://127.0.0.1:8000).

Run by ``make load`` (devtools/loadgen) and, in a cluster, by the chart's optional load generator
(``loadGenerator.enabled``: the official ``locustio/locust`` image with this file from a ConfigMap). It
needs only Locust and websocket-client (a dependency of Locust).

A realistic mix (weights are the share of simulated users):

* ``Browser`` (3): anonymous catalog browsing: list pages, categories, sorting, product pages.
* ``Searcher`` (2): anonymous name search with price filters.
* ``Shopper`` (4): signs up (a new customer per user), then browses, places one- and two-line orders,
  reads its orders and cancels some of them (a cancel of an order that already moved on is a 409: expected).
* ``Listener`` (1): a signed-in customer holding ``/api/ws`` open for 10-30 s at a time, placing an order
  and reading the frames that follow (order status, alerts, heartbeats); each frame is a ``WS`` request.

Answers that are part of normal operation are not failures: 429 (the gateway's rate limit; counted in
``rate_limited`` and printed at the end), 409 on cancel and on a placement over the open-orders cap,
422 "out of stock" style rejections on order placement.
Every URL is relative to the host: the load goes nowhere else.

``--progress-every N`` (``make load`` passes 5) prints a line every N seconds while the test runs: requests,
failures, orders placed, rate-limited answers. The chart's generator leaves it off (Locust's own UI shows more).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gevent
import websocket  # websocket-client: blocking sockets that gevent (Locust) makes cooperative
from locust import FastHttpUser, between, events, task
from locust.env import Environment

PASSWORD = "load horse battery staple"  # noqa: S105 - throwaway customers of a load test
CATEGORIES = ("kitchen", "apparel", "books", "home")
SEARCH_TERMS = ("mug", "tee", "lamp", "hoodie", "kettle", "notes", "desk", "cotton", "zip")
SORTS = ("name", "-name", "price", "-price", "newest", "stock")
stats: dict[str, int] = {"rate_limited": 0, "orders_placed": 0, "orders_cancelled": 0, "ws_frames": 0}


def _ok(response: Any, *expected: int) -> bool:
    """Mark a catch_response answer: 429 is the rate limit (not a failure), others must be in ``expected``."""
    if response.status_code == 429:
        stats["rate_limited"] += 1
        response.success()
        return False
    if response.status_code in expected:
        response.success()
        return True
    try:  # problem+json: its type names the error (the detail carries ids that would split the error report)
        problem = str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except Exception:
        problem = (response.text or "")[:80]
    response.failure(f"HTTP {response.status_code} {problem}")
    return False


class _Api(FastHttpUser):
    abstract = True
    wait_time = between(1, 4)
    product_ids: list[str] = []

    def products(self) -> list[str]:
        if not _Api.product_ids:
            with self.client.get("/api/products?limit=50", name="/api/products", catch_response=True) as r:
                if _ok(r, 200):
                    _Api.product_ids = [p["id"] for p in r.json()["items"]]
        return _Api.product_ids


class Browser(_Api):
    weight = 3

    @task(5)
    def list_products(self) -> None:
        params = f"?sort={random.choice(SORTS)}&limit=12&offset={random.choice((0, 0, 12))}"
        with self.client.get(f"/api/products{params}", name="/api/products", catch_response=True) as r:
            _ok(r, 200)

    @task(3)
    def category(self) -> None:
        with self.client.get(f"/api/products?category={random.choice(CATEGORIES)}", name="/api/products?category",
                             catch_response=True) as r:
            _ok(r, 200)

    @task(4)
    def product_page(self) -> None:
        ids = self.products()
        if ids:
            with self.client.get(f"/api/products/{random.choice(ids)}", name="/api/products/{id}",
                                 catch_response=True) as r:
                _ok(r, 200)


class Searcher(_Api):
    weight = 2

    @task
    def search(self) -> None:
        query = f"?q={random.choice(SEARCH_TERMS)}"
        if random.random() < 0.3:
            query += f"&max_price={random.choice((2000, 3000, 5000))}&in_stock=true"
        with self.client.get(f"/api/products{query}", name="/api/products?q", catch_response=True) as r:
            _ok(r, 200)


class _Customer(_Api):
    abstract = True
    token = ""

    def on_start(self) -> None:
        self.sign_in()

    def sign_in(self) -> bool:
        """Sign up and log in (again, when the rate limit refused it before); whether there is a token."""
        if self.token:
            return True
        email = f"load-{uuid.uuid4().hex[:12]}@load.example"
        with self.client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Load"},
                              name="/api/auth/register", catch_response=True) as r:
            _ok(r, 201, 200)
        with self.client.post("/api/auth/login", json={"email": email, "password": PASSWORD},
                              name="/api/auth/login", catch_response=True) as r:
            if _ok(r, 200):
                self.token = r.json()["access_token"]
        return bool(self.token)

    def check(self, response: Any, *expected: int) -> bool:
        """``_ok``, and an expired access token (401 after its 15 minutes) is dropped: the next task signs in again."""
        if response.status_code == 401:
            self.token = ""
        return _ok(response, *expected)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class Shopper(_Customer):
    weight = 4
    order_ids: list[str]

    def on_start(self) -> None:
        super().on_start()
        self.order_ids = []

    @task(4)
    def browse(self) -> None:
        with self.client.get("/api/products?limit=12", name="/api/products", headers=self.auth,
                             catch_response=True) as r:
            self.check(r, 200)

    @task(3)
    def place_order(self) -> None:
        ids = self.products()
        if not ids or not self.sign_in():
            return
        lines = random.sample(ids, k=min(len(ids), random.choice((1, 1, 2))))
        body = {"items": [{"product_id": pid, "quantity": random.choice((1, 1, 2))} for pid in lines]}
        with self.client.post("/api/orders", json=body, headers=self.auth, name="/api/orders [place]",
                              catch_response=True) as r:
            # 409: this shopper's open orders hold the per-customer maximum of a product (a long run meets it).
            if self.check(r, 201, 202, 409) and r.status_code != 409:
                stats["orders_placed"] += 1
                self.order_ids.append(r.json()["id"])

    @task(2)
    def my_orders(self) -> None:
        if self.sign_in():
            with self.client.get("/api/orders", headers=self.auth, name="/api/orders", catch_response=True) as r:
                self.check(r, 200)

    @task(1)
    def cancel(self) -> None:
        if not self.order_ids:
            return
        order_id = self.order_ids.pop(random.randrange(len(self.order_ids)))
        with self.client.post(f"/api/orders/{order_id}/cancel", headers=self.auth, name="/api/orders/{id}/cancel",
                              catch_response=True) as r:
            if self.check(r, 200, 409):  # 409: it was rejected or moved on meanwhile
                stats["orders_cancelled"] += r.status_code == 200


class Listener(_Customer):
    """Holds the live-updates WebSocket open; each received frame is a ``WS frame`` request in the stats."""

    weight = 1
    wait_time = between(0, 1)

    def ws_url(self) -> str:
        parts = urlsplit(self.host or "")
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, "/api/ws", f"access_token={self.token}", ""))

    @task
    def listen(self) -> None:
        if not self.sign_in():
            time.sleep(1)
            return
        start = time.perf_counter()
        try:
            ws = websocket.create_connection(self.ws_url(), timeout=10)
        except Exception as exc:
            events.request.fire(request_type="WS", name="/api/ws [connect]", response_time=0, response_length=0,
                                exception=exc, context={})
            return
        events.request.fire(request_type="WS", name="/api/ws [connect]",
                            response_time=(time.perf_counter() - start) * 1000, response_length=0, exception=None,
                            context={})
        # One order of its own, so order_status frames arrive on this socket as the saga moves it on.
        ids = self.products()
        if ids:
            with self.client.post("/api/orders", json={"items": [{"product_id": random.choice(ids), "quantity": 1}]},
                                  headers=self.auth, name="/api/orders [place]", catch_response=True) as r:
                if self.check(r, 201, 202):
                    stats["orders_placed"] += 1
        deadline = time.monotonic() + random.uniform(10, 30)
        try:
            while time.monotonic() < deadline:
                try:
                    frame = ws.recv()
                except websocket.WebSocketTimeoutException:
                    continue
                kind = json.loads(frame).get("type", "?") if frame else "empty"
                stats["ws_frames"] += 1
                events.request.fire(request_type="WS", name=f"/api/ws [{kind}]", response_time=0,
                                    response_length=len(frame or ""), exception=None, context={})
        except websocket.WebSocketException as exc:
            events.request.fire(request_type="WS", name="/api/ws [closed]", response_time=0, response_length=0,
                                exception=exc, context={})
        finally:
            ws.close()


@events.quitting.add_listener
def _summary(environment: Environment, **_kwargs: Any) -> None:
    print("microshop load: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items()))


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--progress-every", type=float, default=0, metavar="SECONDS", include_in_web_ui=False,
                        help="print requests, failures and orders placed every SECONDS while running (0: never)")


def progress_line(environment: Environment, elapsed: float) -> str:
    total = environment.stats.total
    return (f"microshop load: {elapsed:.0f} s, {total.num_requests} requests ({total.current_rps:.1f}/s), "
            f"{total.num_failures} failures, {stats['orders_placed']} orders placed, "
            f"{stats['rate_limited']} rate-limited")


_reporter: list[gevent.Greenlet] = []


@events.test_start.add_listener
def _progress(environment: Environment, **_kwargs: Any) -> None:
    every = float(getattr(environment.parsed_options, "progress_every", 0) or 0)
    if every <= 0 or _reporter:
        return
    started = time.monotonic()

    def report() -> None:
        while True:
            gevent.sleep(every)
            print(progress_line(environment, time.monotonic() - started), flush=True)

    _reporter.append(gevent.spawn(report))


@events.test_stopping.add_listener
def _progress_stop(environment: Environment, **_kwargs: Any) -> None:
    while _reporter:
        _reporter.pop().kill(block=False)
