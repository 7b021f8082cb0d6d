"""The same scenarios as tests/operator, against a real cluster with the operator installed."""

from __future__ import annotations

import os
import uuid

import aiohttp
import pytest

from tests.operator import scenarios
from tests.operator.scenarios import Env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def shop_name() -> str:
    return f"shop-{uuid.uuid4().hex[:6]}"


async def test_applying_a_shop_creates_owned_children(env: Env) -> None:
    await scenarios.applying_a_shop_creates_owned_children(env, shop_name())


async def test_changing_replicas_and_tag_updates_children(env: Env) -> None:
    await scenarios.changing_replicas_and_tag_updates_children(env, shop_name())


async def test_deleted_and_edited_children_are_restored(env: Env) -> None:
    await scenarios.drift_is_repaired(env, shop_name())


async def test_readiness_is_reported_per_component(env: Env) -> None:
    await scenarios.readiness_is_reported(env, shop_name())


async def test_disabling_analytics_prunes_its_objects(env: Env) -> None:
    await scenarios.disabling_analytics_prunes_it(env, shop_name())


async def test_unrenderable_spec_degrades(env: Env) -> None:
    # The operator's /healthz is inside the cluster: check it through the API server's pod proxy.
    namespace = os.environ.get("OPERATOR_NAMESPACE", "microshop-system")

    async def healthy() -> bool:
        pods = await env.api.items(f"/api/v1/namespaces/{namespace}/pods",
                                   "app.kubernetes.io/name=microshop-operator")
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        if not running:
            return False
        pod = running[0]["metadata"]["name"]
        url = f"{env.api.base_url}/api/v1/namespaces/{namespace}/pods/{pod}:8080/proxy/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status == 200

    await scenarios.unrenderable_spec_degrades(env, shop_name(), healthy)


async def test_invalid_spec_is_rejected_by_the_schema(env: Env) -> None:
    await scenarios.invalid_spec_is_rejected(env, shop_name())


@pytest.mark.parametrize("delete_volumes", [False, True], ids=["keep-volumes", "delete-volumes"])
async def test_deleting_a_shop_completes(env: Env, delete_volumes: bool) -> None:
    await scenarios.deleting_a_shop_completes(env, shop_name(), delete_volumes=delete_volumes)
