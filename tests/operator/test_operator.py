"""The operator under kopf's runtime against the emulator: every behaviour of issues 6 and 11, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from tests.operator import scenarios
from tests.operator.conftest import probe
from tests.operator.scenarios import Env, shop_name
from tests.support.metrics import parse_samples

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=str)
async def test_scenario(env: Env, scenario: scenarios.Scenario) -> None:
    await scenario.run(env, shop_name())


async def test_operator_metrics_count_reconciles_shops_and_drift_repairs(env: Env, metrics_url: str) -> None:
    """``/metrics`` on the operator's own port: reconciles by result, their duration, Shops by phase, drift repairs."""

    async def scrape() -> dict[str, float]:
        async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
            assert resp.status == 200
            return parse_samples(await resp.text())

    await scenarios.drift_is_repaired(env, shop_name())
    samples = await scrape()
    assert samples['microshop_operator_reconciles_total{result="success"}'] >= 1
    assert samples["microshop_operator_reconcile_seconds_count"] >= 1
    assert sum(v for k, v in samples.items() if k.startswith("microshop_operator_shops{")) >= 1
    assert samples["microshop_operator_drift_repairs_total"] >= 2  # a deleted Deployment, edited replicas


async def test_unrenderable_spec_degrades_and_operator_stays_healthy(env: Env, liveness_url: str) -> None:
    async def healthy() -> bool:
        return await probe(liveness_url)

    await scenarios.unrenderable_spec_degrades(env, shop_name(), healthy)


async def test_per_event_handlers_are_quiet(env: Env, operator_log: Path) -> None:
    """Child and Shop events are many: their handlers' "succeeded" lines are not logged at INFO."""
    await scenarios.drift_is_repaired(env, shop_name())  # child events for sure
    lines = [json.loads(line) for line in operator_log.read_text().splitlines() if line.startswith("{")]
    assert any("created Secret" in line["message"] for line in lines), "the log is there and at INFO"
    noisy = [line for line in lines if line["message"] in (
        "Handler 'child_event' succeeded.", "Handler 'shop_event' succeeded.")]
    assert not noisy, noisy[:3]
