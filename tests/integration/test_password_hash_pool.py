"""customers under a burst of logins, configured and measured as the chart runs it (issues 12, 23).

The customers process gets the chart's password-hashing values; 50 logins arrive at once. Every one
succeeds (they wait their turn within the wait budget), the process does not crash, and its peak
resident memory (``VmHWM``) stays under the chart's memory limit for customers. With a budget the
burst outgrows, what the pool cannot take is answered 503 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from argon2 import PasswordHasher

from devtools.procs import Proc, free_port
from tests.charts.test_password_hash_budget import BASELINE_BUDGET_MIB
from tests.support.api import unique_email

ROOT = Path(__file__).resolve().parents[2]
VALUES = yaml.safe_load((ROOT / "charts" / "microshop" / "values.yaml").read_text())
HASHING = VALUES["auth"]["passwordHashing"]
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
PASSWORD = "correct horse battery"
PARALLEL = 50


def limit_bytes() -> int:
    limit = str(VALUES["services"]["customers"]["resources"]["limits"]["memory"])
    return int(limit[:-2]) * UNITS[limit[-2:]]


def rss_bytes(pid: int, field: str = "VmHWM") -> int:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


@pytest.fixture
def customers(request: pytest.FixtureRequest, mongo_url: str, key_file: Path) -> Iterator[tuple[str, Proc]]:
    """A customers process with the chart's hashing values; ``indirect`` parametrisation adds variables."""
    extra: dict[str, str] = getattr(request, "param", {})
    port = free_port()
    proc = Proc(
        name="customers-limited",
        argv=[sys.executable, "-m", "customers"],
        env={
            "MICROSHOP_PORT": str(port),
            "MICROSHOP_MONGO_URL": mongo_url,
            "MICROSHOP_MONGO_DATABASE": f"hashpool_{uuid.uuid4().hex[:8]}",
            "MICROSHOP_JWT_PRIVATE_KEY_FILE": str(key_file),
            "MICROSHOP_PASSWORD_HASH_CONCURRENCY": str(HASHING["concurrency"]),
            "MICROSHOP_PASSWORD_HASH_MAX_WAIT_SECONDS": str(HASHING["maxWaitSeconds"]),
            "MICROSHOP_PASSWORD_HASH_MEMORY_KIB": str(HASHING["memoryKiB"]),
            "MICROSHOP_PASSWORD_HASH_TIME_COST": str(HASHING["timeCost"]),
            "MICROSHOP_PASSWORD_HASH_PARALLELISM": str(HASHING["parallelism"]),
            "MICROSHOP_LOG_LEVEL": "WARNING",
            **extra,
        },
        ready_url=f"http://127.0.0.1:{port}/health/ready",
    ).start()
    try:
        proc.wait_ready(60)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


async def burst(client: httpx.AsyncClient) -> tuple[str, list[httpx.Response]]:
    email = unique_email()
    r = await client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "Burst"})
    assert r.status_code == 201, r.text
    answers = await asyncio.gather(*(
        client.post("/auth/login", json={"email": email, "password": PASSWORD}) for _ in range(PARALLEL)
    ))
    return email, list(answers)


async def test_fifty_parallel_logins_all_succeed_under_the_chart_memory_limit(customers: tuple[str, Proc]) -> None:
    url, proc = customers
    assert proc.pid is not None
    baseline = rss_bytes(proc.pid, "VmRSS")  # idle (the one hash at start-up has freed its memory)
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        _, answers = await burst(client)
    counts = Counter(r.status_code for r in answers)
    peak = rss_bytes(proc.pid)
    print(f"\n{PARALLEL} parallel logins: {dict(counts)}; peak RSS {peak / 2**20:.0f} MiB "
          f"(baseline {baseline / 2**20:.0f} MiB) of a {limit_bytes() / 2**20:.0f} MiB limit")
    assert proc.running
    assert peak < limit_bytes()
    assert baseline < BASELINE_BUDGET_MIB * 2**20  # the baseline the chart's budget assumes
    if counts != {200: PARALLEL}:
        # Refusals are right only on a machine too slow (or too busy) to run the burst within the budget.
        needed = PARALLEL / HASHING["concurrency"] * await asyncio.to_thread(seconds_per_parallel_hash)
        assert needed > HASHING["maxWaitSeconds"], (counts, [r.text for r in answers if r.status_code != 200][:3])
        pytest.skip(f"this machine is too busy for the claim: {PARALLEL} hashes need {needed:.1f} s here now, over "
                    f"the {HASHING['maxWaitSeconds']} s budget ({dict(counts)}; load {os.getloadavg()[0]:.1f})")


def seconds_per_parallel_hash() -> float:
    """Wall time per hash of the chart's argon2 parameters, ``concurrency`` at a time, measured here now."""
    hasher = PasswordHasher(time_cost=HASHING["timeCost"], memory_cost=HASHING["memoryKiB"],
                            parallelism=HASHING["parallelism"])
    rounds = 3
    with ThreadPoolExecutor(HASHING["concurrency"]) as pool:
        started = time.perf_counter()
        list(pool.map(hasher.hash, ["calibration"] * (rounds * HASHING["concurrency"])))
    return (time.perf_counter() - started) / rounds


@pytest.mark.parametrize("customers", [{"MICROSHOP_PASSWORD_HASH_MAX_WAIT_SECONDS": "0.5"}], indirect=True)
async def test_beyond_the_wait_budget_logins_get_503_with_retry_after(customers: tuple[str, Proc]) -> None:
    url, proc = customers
    assert proc.pid is not None
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        email, answers = await burst(client)
        counts = Counter(r.status_code for r in answers)
        busy = [r for r in answers if r.status_code == 503]
        assert proc.running
        assert set(counts) == {200, 503}, counts
        assert counts[200] >= HASHING["concurrency"]
        for r in busy:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["type"].endswith("/password-hashing-busy")
        assert rss_bytes(proc.pid) < limit_bytes()
        # The service still answers, and logs in once the burst is over.
        r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200
