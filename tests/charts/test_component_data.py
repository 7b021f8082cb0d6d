"""What differs between services is data (templates/_components.tpl); the generic templates name no service.

One template renders all six services (the OpenTelemetry demo chart's way). A branch on a service's name
in it would hide a service's needs where nobody looks for them, and a seventh service would need edits
in the generic code instead of one entry in the component data.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from devtools.shop import SERVICES
from tests.charts.conftest import SHOP_CHART, Render, by_kind

TEMPLATES = SHOP_CHART / "templates"
# Templates that loop over the services; the component data lives in _components.tpl.
GENERIC_TEMPLATES = ("services.yaml", "networkpolicies.yaml", "_helpers.tpl")
NAMES = tuple(s.name for s in SERVICES)


def test_generic_templates_name_no_service() -> None:
    pattern = re.compile(r"\b(" + "|".join(NAMES) + r")\b")
    for template in GENERIC_TEMPLATES:
        for number, line in enumerate((TEMPLATES / template).read_text().splitlines(), start=1):
            found = pattern.search(line)
            assert found is None, f"templates/{template}:{number} names the service {found.group(1)!r}: {line.strip()}"


def _topology() -> dict[str, Any]:
    # templates/_components.tpl's microshop.topology is this generated file (devtools/generate.py).
    assert 'Files.Get "files/topology.yaml"' in (TEMPLATES / "_components.tpl").read_text()
    topology: dict[str, Any] = yaml.safe_load((SHOP_CHART / "files" / "topology.yaml").read_text())
    return topology


def test_component_data_describes_every_service_on_its_port() -> None:
    topology = _topology()
    assert set(topology) == set(NAMES)
    assert {name: entry["port"] for name, entry in topology.items()} == {s.name: s.port for s in SERVICES}
    assert [name for name, entry in topology.items() if entry.get("public")] == ["gateway"]
    for name, entry in topology.items():
        assert set(entry["callers"]) <= set(NAMES), name
        if not entry.get("public"):
            assert "gateway" in entry["callers"], f"the gateway proxies to {name}, so it must be admitted"


def _pod(objects: list[dict[str, Any]], service: str) -> dict[str, Any]:
    pod: dict[str, Any] = by_kind(objects, "Deployment")[f"shop-{service}"]["spec"]["template"]
    return pod


def test_component_pod_parts_reach_only_their_service(render: Render) -> None:
    objects = render(SHOP_CHART)
    for name in NAMES:
        pod = _pod(objects, name)
        volumes = {v["name"] for v in pod["spec"]["volumes"]}
        mounts = {m["name"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        # Every pod carries the Prometheus scrape annotations (tests/charts/test_observability.py); the rest is
        # component data.
        annotations = {k: v for k, v in pod["metadata"].get("annotations", {}).items()
                       if not k.startswith("prometheus.io/")}
        if name == "customers":
            assert volumes == mounts == {"tmp", "jwt-key"}
            assert set(annotations) == {"checksum/admin-email"}
        else:
            assert volumes == mounts == {"tmp"}, name
            assert not annotations, name


def test_a_changed_admin_email_restarts_customers_only(render: Render) -> None:
    before = render(SHOP_CHART)
    after = render(SHOP_CHART, {"auth": {"adminSecret": {"email": "root@shop.example"}}})
    for name in NAMES:
        changed = _pod(before, name)["metadata"] != _pod(after, name)["metadata"]
        assert changed == (name == "customers"), name
