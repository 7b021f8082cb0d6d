"""customers under a burst of logins, configured and measured as the chart runs it (issue 12).

The customers process gets the chart's password-hashing values; 50 logins arrive at once. It must
not crash, its peak resident memory (``VmHWM``) must stay under the chart's memory limit for
customers, and what the pool cannot take is answered 503 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

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
def customers(mongo_url: str, key_file: Path) -> Iterator[tuple[str, Proc]]:
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
            "MICROSHOP_PASSWORD_HASH_QUEUE": str(HASHING["queue"]),
            "MICROSHOP_PASSWORD_HASH_MEMORY_KIB": str(HASHING["memoryKiB"]),
            "MICROSHOP_PASSWORD_HASH_TIME_COST": str(HASHING["timeCost"]),
            "MICROSHOP_PASSWORD_HASH_PARALLELISM": str(HASHING["parallelism"]),
            "MICROSHOP_LOG_LEVEL": "WARNING",
        },
        ready_url=f"http://127.0.0.1:{port}/health/ready",
    ).start()
    try:
        proc.wait_ready(60)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


async def test_fifty_parallel_logins_stay_under_the_chart_memory_limit(customers: tuple[str, Proc]) -> None:
    url, proc = customers
    assert proc.pid is not None
    baseline = rss_bytes(proc.pid, "VmRSS")  # idle (the one hash at start-up has freed its memory)
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        email = unique_email()
        r = await client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "Burst"})
        assert r.status_code == 201, r.text
        answers = await asyncio.gather(*(
            client.post("/auth/login", json={"email": email, "password": PASSWORD}) for _ in range(PARALLEL)
        ))
        counts = Counter(r.status_code for r in answers)
        busy = [r for r in answers if r.status_code == 503]
        peak = rss_bytes(proc.pid)
        print(f"\n{PARALLEL} parallel logins: {dict(counts)}; peak RSS {peak / 2**20:.0f} MiB "
              f"(baseline {baseline / 2**20:.0f} MiB) of a {limit_bytes() / 2**20:.0f} MiB limit")
        assert proc.running
        assert set(counts) <= {200, 503}, counts
        assert counts[200] >= HASHING["concurrency"]
        assert busy, "nothing was refused: the pool did not bound the burst"
        for r in busy:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["type"].endswith("/password-hashing-busy")
        assert peak < limit_bytes()
        assert baseline < BASELINE_BUDGET_MIB * 2**20  # the baseline the chart's budget assumes
        # The service still answers, and logs in once the burst is over.
        r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200
