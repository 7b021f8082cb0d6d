"""The customers pod's memory limit covers its password hashing (issue 12).

At most ``concurrency`` argon2 hashes run at once, each holding ``memory_kib``; on top of that the
process needs its baseline (measured idle by tests/integration/test_password_hash_pool.py, which also
checks the peak under a burst of 50 logins stays under the limit).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.conftest import SHOP_CHART, Render, by_kind

BASELINE_BUDGET_MIB = 128  # an idle customers process measures ~100 MiB resident
UNITS = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}


def mib(quantity: str) -> float:
    return float(quantity[:-2]) * UNITS[quantity[-2:]]


def customers_pod(render: Render, values: dict[str, Any]) -> tuple[dict[str, str], float]:
    deployment = by_kind(render(SHOP_CHART, values), "Deployment")["shop-customers"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    return env, mib(container["resources"]["limits"]["memory"])


@pytest.mark.parametrize("values", [
    {},
    {"auth": {"passwordHashing": {"concurrency": 4, "maxWaitSeconds": 2.5, "memoryKiB": 19456, "timeCost": 2,
                                  "parallelism": 1}}},
], ids=["defaults", "owasp-minimum"])
def test_concurrency_times_memory_cost_plus_baseline_fits_the_limit(render: Render, values: dict[str, Any]) -> None:
    env, limit = customers_pod(render, values)
    concurrency = int(env["MICROSHOP_PASSWORD_HASH_CONCURRENCY"])
    memory_mib = int(env["MICROSHOP_PASSWORD_HASH_MEMORY_KIB"]) / 1024
    assert float(env["MICROSHOP_PASSWORD_HASH_MAX_WAIT_SECONDS"]) > 0
    assert concurrency * memory_mib + BASELINE_BUDGET_MIB <= limit, (
        f"{concurrency} x {memory_mib} MiB + {BASELINE_BUDGET_MIB} MiB baseline > {limit} MiB limit")
