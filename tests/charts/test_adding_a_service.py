"""A service added to the registry reaches the chart, the CRD, compose and the operator with nothing else.

A throw-away service (``wishlist``: MongoDB, and the bus, consuming ``order_exchange``) is added to the
registry for this test only; devtools.generate writes the generated files into a copy of the chart and
the compose files, and the outputs are checked: the rendered chart (Deployment, Service, its env, the
gateway's route to it, NetworkPolicies, its own MongoDB and RabbitMQ users and their permissions), the
Shop CRD, both compose files, and what the operator renders and creates from that chart.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import generate
from devtools.generate import ROOT, BusDeclaration, Route, app_bus, app_routes
from microshop_operator import secrets, values
from microshop_operator.render import Renderer
from shopkit.messaging.topology import Topology
from shopkit.registry import MONGODB, RABBITMQ, SERVICES, Service
from tests.charts.conftest import Render, by_kind

WISHLIST = Service("wishlist", 8006, infra=(MONGODB, RABBITMQ), prefixes=("wishlist",), callers=("gateway",))
WITH_WISHLIST = (*SERVICES, WISHLIST)
WISHLIST_PERMISSIONS = Topology("").permissions({"wishlist"}, {"order_exchange"}, set())


def bus_of(name: str) -> BusDeclaration:
    if name == WISHLIST.name:  # what its app's EventBus would declare
        granted = WISHLIST_PERMISSIONS
        return BusDeclaration(("order_exchange",), (), {"configure": granted.configure, "write": granted.write,
                                                         "read": granted.read})
    return app_bus(name)


def routes_of(name: str) -> list[Route]:
    if name == WISHLIST.name:  # what its app's handlers would declare
        return [Route(("GET",), "/wishlist", "signed-in", None),
                Route(("POST",), "/wishlist/{id}/share", "public", ("shopkit.contracts.wishlist", "ShareRequest")),
                Route(("DELETE",), "/wishlist/admin/purge", "admin", None)]
    return app_routes(name)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart, the CRD and the compose files, regenerated with the throw-away service."""
    root = tmp_path_factory.mktemp("with-wishlist")
    shutil.copytree(ROOT / "charts" / "microshop", root / "charts" / "microshop")
    shutil.copytree(ROOT / "charts" / "microshop-operator", root / "charts" / "microshop-operator")
    for name in ("compose.yaml", "compose.host.yaml"):
        shutil.copy(ROOT / name, root / name)
    for path, text in generate.outputs(WITH_WISHLIST, bus_of, root=root, routes_of=routes_of).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _env(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    container = by_kind(objects, "Deployment")[f"shop-{name}"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _admitted(objects: list[dict[str, Any]], policy: str) -> set[str]:
    rules = by_kind(objects, "NetworkPolicy")[policy]["spec"]["ingress"]
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in rules for peer in rule.get("from", []) if "podSelector" in peer}


def test_the_rendered_chart_runs_it(render: Render, root: Path) -> None:
    objects = render(root / "charts" / "microshop")
    deployment = by_kind(objects, "Deployment")["shop-wishlist"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8006
    assert by_kind(objects, "Service")["shop-wishlist"]["spec"]["ports"][0]["port"] == 8006
    env = _env(objects, "wishlist")
    assert env["MICROSHOP_PORT"] == "8006"
    assert env["MICROSHOP_MONGO_URL"].startswith("mongodb://wishlist:$(MONGODB_PASSWORD)@")
    assert env["MICROSHOP_RABBITMQ_URL"] == "amqp://wishlist:$(RABBITMQ_PASSWORD)@shop-rabbitmq:5672/"
    assert _env(objects, "gateway")["MICROSHOP_WISHLIST_URL"] == "http://shop-wishlist:8006"
    assert _admitted(objects, "shop-wishlist") == {"gateway"}
    assert "wishlist" in _admitted(objects, "shop-mongodb")
    assert "wishlist" in _admitted(objects, "shop-rabbitmq")
    assert "wishlist" not in _admitted(objects, "shop-redis")

    definitions = json.loads(by_kind(objects, "ConfigMap")["shop-rabbitmq-definitions"]["data"]["definitions.json"])
    granted = next(p for p in definitions["permissions"] if p["user"] == "wishlist")
    assert (granted["configure"], granted["write"], granted["read"]) == (
        WISHLIST_PERMISSIONS.configure, WISHLIST_PERMISSIONS.write, WISHLIST_PERMISSIONS.read)
    users = json.loads(by_kind(objects, "ConfigMap")["shop-mongodb-users"]["data"]["users.json"])
    assert {"user": "wishlist", "db": "wishlist"}.items() <= next(u for u in users if u["user"] == "wishlist").items()
    infra = by_kind(objects, "Secret")["shop-infra"]
    assert {"mongodb-password-wishlist", "rabbitmq-password-wishlist"} <= set(infra.get("data") or {})


def test_the_gateway_routes_to_it_with_its_own_edge_rules(root: Path) -> None:
    namespace: dict[str, Any] = {}
    exec((root / "services" / "gateway" / "edge.py").read_text(), namespace)  # noqa: S102 - our generated file
    admin = next(rule for rule in namespace["ACCESS"] if rule[1] == "/wishlist/admin/purge")
    assert admin[2] == "admin" and "DELETE" in admin[0]
    assert set(admin[0]) == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}, "an admin area is admin for every method"
    assert (("POST",), "/wishlist/{id}/share", "public") in namespace["ACCESS"]
    assert (("POST",), "/wishlist/{id}/share") in namespace["ANONYMOUS"]
    assert ("POST", "/wishlist/{id}/share", "shopkit.contracts.wishlist", "ShareRequest") in namespace["CONTRACTS"]
    assert not any(rule[1] == "/wishlist" for rule in namespace["ACCESS"]), "signed-in is the default"


def test_the_crd_accepts_its_settings(root: Path) -> None:
    crd = yaml.safe_load((root / "charts" / "microshop-operator" / "crds" / "shops.microshop.dev.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "wishlist" in spec["properties"]["services"]["properties"]


def test_compose_runs_it(root: Path) -> None:
    compose = yaml.safe_load((root / "compose.yaml").read_text())["services"]
    assert compose["wishlist"]["command"] == ["wishlist"]
    assert compose["wishlist"]["environment"]["MICROSHOP_PORT"] == "8006"
    assert compose["gateway"]["environment"]["MICROSHOP_WISHLIST_URL"] == "http://wishlist:8006"
    assert "wishlist" in compose["gateway"]["depends_on"]
    host = yaml.safe_load((root / "compose.host.yaml").read_text())["services"]
    assert host["wishlist"]["environment"]["MICROSHOP_PORT"] == "${WISHLIST_PORT:-8006}"
    assert host["gateway"]["environment"]["MICROSHOP_WISHLIST_URL"] == "http://127.0.0.1:${WISHLIST_PORT:-8006}"


def test_the_operator_renders_and_provisions_it(helm: Path, root: Path) -> None:
    chart = root / "charts" / "microshop"
    topology = values.chart_topology(chart)
    assert "wishlist" in values.enabled_services({}, tuple(topology))
    keys = secrets.infra_keys_by_component(topology)
    assert "mongodb-password-wishlist" in keys["mongodb"]
    assert "rabbitmq-password-wishlist" in keys["rabbitmq"]
    objects = asyncio.run(Renderer(str(helm), chart).render("shop", "shop-ns", values.spec_to_values("shop", {})))
    assert "shop-wishlist" in by_kind(objects, "Deployment")
