"""The chart's NetworkPolicies let each service reach exactly the infrastructure its app connects to.

The apps say what they use (``app.state["infrastructure"]``, recorded by the kit from
``use_mongo`` / ``use_redis`` / the event bus); a service the policies forgot would time out in
a cluster while every local test passed.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from devtools.shop import SERVICES
from tests.charts.conftest import SHOP_CHART

INFRA = ("mongodb", "redis", "rabbitmq")


def app_infrastructure(service: str) -> set[str]:
    app_module = importlib.import_module(f"{service}.app")
    settings_module = importlib.import_module(f"{service}.settings")
    app = app_module.create_app(settings_module.Settings())
    return set(app.state["infrastructure"])


def allowed_components(objects: list[dict[str, Any]], infra: str) -> set[str]:
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith(f"-{infra}"))
    allowed: set[str] = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule.get("from", []):
            component = peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            if component:
                allowed.add(component)
    return allowed


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_network_policies_match_what_each_service_connects_to(render: Any, service: str) -> None:
    objects = render(SHOP_CHART)
    used = app_infrastructure(service)
    for infra in INFRA:
        may_reach = service in allowed_components(objects, infra)
        assert may_reach == (infra in used), (
            f"{service} {'uses' if infra in used else 'does not use'} {infra}, "
            f"but the NetworkPolicy {'does not admit' if infra in used else 'admits'} it"
        )
