"""The same scenarios as tests/operator, against a real cluster with the operator installed."""

from __future__ import annotations

import os

import aiohttp
import pytest

from tests.operator import scenarios
from tests.operator.scenarios import Env, shop_name

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest.mark.parametrize("scenario", [s for s in scenarios.SCENARIOS if s.e2e], ids=str)
async def test_scenario(env: Env, scenario: scenarios.Scenario) -> None:
    await scenario.run(env, shop_name())


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
