"""`make dev`'s runner: starts the whole shop, prints URL and dev credentials, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from devtools.infra import reachable
from devtools.procs import ROOT, wait_until
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, SERVICES


def _free_offset() -> int:
    """An offset that puts all of 8000..8005 (+offset) on free ports below 20000: under the kernel's
    ephemeral range (no outgoing connection is handed one of them while the shop starts) and under
    the range ``free_port`` picks from for the other test shops."""
    for _ in range(200):
        offset = random.randrange(100, 11000, 10)
        if all(not reachable(s.port + offset) for s in SERVICES):
            return offset
    raise RuntimeError("no free port range found")


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    parents: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        parents.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _post_json(url: str, body: dict[str, str]) -> dict[str, str]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def _dashboard_low_stock(gateway: str, token: str) -> set[str]:
    request = urllib.request.Request(f"{gateway}/api/analytics/dashboard", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return {item["product_id"] for item in json.loads(resp.read())["low_stock"]}


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("analytics", ["enabled", "disabled"])
def test_dev_runner_serves_the_shop_and_stops_cleanly(tmp_path: Path, analytics: str, namespace: str) -> None:
    offset = _free_offset()
    env = {**os.environ, "MICROSHOP_RATE_LIMIT_REQUESTS": "100000"}
    if analytics == "disabled":
        env["MICROSHOP_ANALYTICS_ENABLED"] = "false"
    # The README's command, in its own session like a terminal's foreground job; Ctrl-C is a
    # SIGINT to that whole process group.
    args = f"--port-offset {offset} --state-dir {tmp_path} --namespace {namespace}dev{uuid.uuid4().hex[:6]}."
    runner = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"ARGS={args}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(runner.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        assert wait_until(lambda: any("microshop is running" in ln for ln in lines) or runner.poll() is not None,
                          120), "\n".join(lines[-50:])
        assert runner.poll() is None, "\n".join(lines[-50:])
        banner = "".join(lines)
        gateway = f"http://127.0.0.1:{8000 + offset}"
        assert f"{gateway}/api" in banner
        assert DEV_ADMIN_EMAIL in banner and DEV_ADMIN_PASSWORD in banner
        # Where the metrics are: each service's own port (and they answer).
        orders_metrics = f"http://127.0.0.1:{8003 + offset}/metrics"
        assert orders_metrics in banner and "traces: " in banner
        with urllib.request.urlopen(orders_metrics, timeout=5) as resp:
            assert b"microshop_orders_placed_total" in resp.read()

        status, health = _get_json(f"{gateway}/api/health")
        assert status == 200, health
        assert health["status"] == "ok", health
        services = health["services"]
        assert isinstance(services, dict)
        assert ("analytics-service" in services) == (analytics == "enabled")
        assert all(v == "running" for v in services.values())

        # The demo catalog is seeded, and its events reached the consumers: the seeded product that
        # starts below its threshold is on the admin dashboard (when analytics runs).
        products = _get_json(f"{gateway}/api/products?limit=100")[1]["items"]
        assert isinstance(products, list) and len(products) >= 3
        if analytics == "enabled":
            low = {p["id"] for p in products if p["stock"] <= p["low_stock_threshold"]}
            assert low, "the demo catalog should hold a low-stock product"
            token = _post_json(f"{gateway}/api/auth/login",
                               {"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})["access_token"]
            assert wait_until(lambda: low <= _dashboard_low_stock(gateway, token), 20)

        children = _children(runner.pid)
        assert len(children) >= 3  # SecantusDB, customers, gateway at the very least
    finally:
        os.killpg(runner.pid, signal.SIGINT)
        try:
            runner.wait(30)
        except subprocess.TimeoutExpired:
            runner.kill()
            raise
    # make itself ends by the SIGINT (as in a terminal); the runner under it stopped the shop first.
    assert runner.returncode in (0, -signal.SIGINT), "\n".join(lines[-30:])
    assert any("stopping microshop" in ln for ln in lines)
    # The services stop before the database: their outbox relays' last rounds reach it.
    assert not [ln for ln in lines if "last round" in ln], "\n".join(lines[-30:])
    assert wait_until(lambda: not any(_alive(p) for p in children), 10), "processes left behind after Ctrl-C"
    assert (tmp_path / "jwt-private.pem").stat().st_mode & 0o077 == 0, "the dev signing key must be private"
