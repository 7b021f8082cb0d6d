"""The operator under kopf's runtime against the emulator: every behaviour of issues 6 and 11, end to end."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.operator import scenarios
from tests.operator.conftest import probe
from tests.operator.scenarios import Env
from tests.support.metrics import parse_samples

pytestmark = pytest.mark.asyncio(loop_scope="session")


def shop_name() -> str:
    return f"shop-{uuid.uuid4().hex[:6]}"


async def test_applying_a_shop_creates_owned_children(env: Env) -> None:
    await scenarios.applying_a_shop_creates_owned_children(env, shop_name())


async def test_existing_secrets_are_never_overwritten(env: Env) -> None:
    await scenarios.secrets_are_never_overwritten(env, shop_name())


async def test_own_infra_secret_gains_the_keys_a_newer_chart_references(env: Env) -> None:
    await scenarios.own_infra_secret_gains_the_keys_a_newer_chart_references(env, shop_name())


async def test_incomplete_infra_secret_degrades_until_completed(env: Env) -> None:
    await scenarios.incomplete_infra_secret_degrades(env, shop_name())


async def test_external_infrastructure_needs_no_infra_secret(env: Env) -> None:
    await scenarios.external_infrastructure_needs_no_infra_secret(env, shop_name())


async def test_changing_replicas_and_tag_updates_children(env: Env) -> None:
    await scenarios.changing_replicas_and_tag_updates_children(env, shop_name())


async def test_deleted_and_edited_children_are_restored(env: Env) -> None:
    await scenarios.drift_is_repaired(env, shop_name())


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


async def test_readiness_is_reported_per_component(env: Env) -> None:
    await scenarios.readiness_is_reported(env, shop_name())


async def test_disabling_analytics_prunes_its_objects(env: Env) -> None:
    await scenarios.disabling_analytics_prunes_it(env, shop_name())


async def test_unrenderable_spec_degrades_and_operator_stays_healthy(env: Env, liveness_url: str) -> None:
    async def healthy() -> bool:
        return await probe(liveness_url)

    await scenarios.unrenderable_spec_degrades(env, shop_name(), healthy)


async def test_invalid_spec_is_rejected_by_the_schema(env: Env) -> None:
    await scenarios.invalid_spec_is_rejected(env, shop_name())


@pytest.mark.parametrize("delete_volumes", [False, True], ids=["keep-volumes", "delete-volumes"])
async def test_deleting_a_shop_completes(env: Env, delete_volumes: bool) -> None:
    await scenarios.deleting_a_shop_completes(env, shop_name(), delete_volumes=delete_volumes)


async def test_paused_shop_does_not_claim_new_generations(env: Env) -> None:
    await scenarios.paused_shop_does_not_claim_new_generations(env, shop_name())


async def test_storage_change_is_rejected(env: Env) -> None:
    await scenarios.storage_change_is_rejected(env, shop_name())


async def test_optional_kinds_are_applied_and_pruned(env: Env) -> None:
    await scenarios.optional_kinds_are_applied_and_pruned(env, shop_name())


async def test_claims_of_an_existing_statefulset_are_kept(env: Env) -> None:
    await scenarios.claims_of_an_existing_statefulset_are_kept(env, shop_name())


async def test_per_event_handlers_are_quiet(env: Env, operator_log: Path) -> None:
    """Child and Shop events are many: their handlers' "succeeded" lines are not logged at INFO."""
    await scenarios.drift_is_repaired(env, shop_name())  # child events for sure
    lines = [json.loads(line) for line in operator_log.read_text().splitlines() if line.startswith("{")]
    assert any("created Secret" in line["message"] for line in lines), "the log is there and at INFO"
    noisy = [line for line in lines if line["message"] in (
        "Handler 'child_event' succeeded.", "Handler 'shop_event' succeeded.")]
    assert not noisy, noisy[:3]


async def test_clustered_infrastructure_reports_member_health(env: Env) -> None:
    await scenarios.clustered_infrastructure_reports_member_health(env, shop_name())
