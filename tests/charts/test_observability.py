"""Observability in the charts: scrape annotations, ServiceMonitor/PodMonitor, tracing values, the Grafana
dashboards (valid JSON, every query parses) and the Prometheus rules (``promtool check`` and ``promtool test``).

Rendered objects of every variant are validated strictly in test_render.py (the ``observability`` variant
turns everything here on; ServiceMonitor and PodMonitor against tests/charts/schemas). ``promtool`` comes
with Debian's ``prometheus`` package (``make infra INFRA_ARGS=--prometheus``, which CI runs); the tests that
need it skip and say so when it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import dashboards
from devtools.prometheus import RULES, scrape_config
from tests.charts.conftest import OPERATOR_CHART, ROOT, SHOP_CHART, Render, by_kind
from tests.charts.test_render import OBSERVABILITY

SERVICES = {"gateway": 8000, "customers": 8001, "products": 8002, "orders": 8003, "alerts": 8004, "analytics": 8005}
RULES_TEST = Path(__file__).parent / "prometheus-rules.test.yml"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install prometheus (make infra INFRA_ARGS=--prometheus)")
    return promtool


def _pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The six services' pod templates (not the load generator's)."""
    return {name.removeprefix("shop-"): d["spec"]["template"] for name, d in by_kind(objects, "Deployment").items()
            if name.removeprefix("shop-") in SERVICES}


def test_service_pods_carry_scrape_annotations_by_default(render: Render) -> None:
    pods = _pods(render(SHOP_CHART))
    assert set(pods) == set(SERVICES)
    for name, pod in pods.items():
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(SERVICES[name]), name
        assert annotations["prometheus.io/path"] == "/metrics", name
    off = _pods(render(SHOP_CHART, {"metrics": {"scrapeAnnotations": False}}))
    assert not any(k.startswith("prometheus.io/") for pod in off.values()
                   for k in pod["metadata"].get("annotations", {}))
    assert off["customers"]["metadata"]["annotations"].keys() == {"checksum/admin-email"}


def test_no_monitoring_objects_by_default(render: Render) -> None:
    objects = render(SHOP_CHART)
    assert not {o["kind"] for o in objects} & {"ServiceMonitor", "PodMonitor"}
    # The only ConfigMaps: the managed infrastructure's users (templates/infrastructure.yaml), no dashboards.
    assert set(by_kind(objects, "ConfigMap")) == {"shop-mongodb-users", "shop-rabbitmq-definitions"}
    assert "shop-loadgen" not in by_kind(render(SHOP_CHART), "Deployment")


def test_service_and_pod_monitor_select_the_services_and_label_them(render: Render) -> None:
    objects = render(SHOP_CHART, OBSERVABILITY)
    monitor = by_kind(objects, "ServiceMonitor")["shop-metrics"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(SERVICES)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "30s")
    assert endpoint["relabelings"][0]["targetLabel"] == "service"
    # The ServiceMonitor's port is the Services' named port; every selected Service has it.
    for name in SERVICES:
        service = by_kind(objects, "Service")[f"shop-{name}"]
        assert {"name": "http", "port": SERVICES[name], "targetPort": "http", "protocol": "TCP"} in service["spec"]["ports"]
    pod_monitor = by_kind(objects, "PodMonitor")["shop-metrics"]
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["interval"]) == ("http", "15s")
    assert endpoint["relabelings"][0]["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    # A disabled service is not selected.
    values = {**OBSERVABILITY, "services": {"analytics": {"enabled": False}}}
    (expression,) = by_kind(render(SHOP_CHART, values), "ServiceMonitor")["shop-metrics"]["spec"]["selector"][
        "matchExpressions"]
    assert "analytics" not in expression["values"]


def test_tracing_values_reach_every_service(render: Render) -> None:
    for name, pod in _pods(render(SHOP_CHART, OBSERVABILITY)).items():
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["MICROSHOP_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318", name
        assert env["MICROSHOP_TRACE_SAMPLE_RATIO"] == "0.25", name
    for pod in _pods(render(SHOP_CHART)).values():
        names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
        assert not names & {"MICROSHOP_OTLP_ENDPOINT", "MICROSHOP_TRACE_SAMPLE_RATIO"}, "tracing is off by default"


def test_scrape_namespaces_open_the_service_ports_to_prometheus(render: Render) -> None:
    policies = by_kind(render(SHOP_CHART, OBSERVABILITY), "NetworkPolicy")
    for name in SERVICES:
        rules = policies[f"shop-{name}"]["spec"]["ingress"]
        scrape = [r for r in rules if any("namespaceSelector" in peer for peer in r.get("from", []))]
        if name == "gateway":
            assert not scrape, "the gateway admits every client already"
            continue
        (rule,) = scrape
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert rule["from"] == [{"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring"]}]}}]
    default = by_kind(render(SHOP_CHART), "NetworkPolicy")
    assert not any("namespaceSelector" in peer for p in default.values() for r in p["spec"].get("ingress", [])
                   for peer in r.get("from", []))


def test_dashboard_configmaps_for_the_grafana_sidecar(render: Render) -> None:
    maps = {name: cm for name, cm in by_kind(render(SHOP_CHART, OBSERVABILITY), "ConfigMap").items()
            if name.startswith("shop-dashboard-")}
    shop = [d for d in dashboards.DASHBOARDS if d.chart == "microshop"]
    assert set(maps) == {f"shop-dashboard-{d.uid}" for d in shop}
    for dashboard in shop:
        cm = maps[f"shop-dashboard-{dashboard.uid}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "microshop"}
        assert json.loads(cm["data"][f"{dashboard.uid}.json"]) == dashboards.render(dashboard)
    operator = by_kind(render(OPERATOR_CHART, {"dashboards": {"enabled": True}}), "ConfigMap")
    (cm,) = operator.values()
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["microshop-operator.json"])["uid"] == "microshop-operator"
    assert not by_kind(render(OPERATOR_CHART), "ConfigMap")


def test_operator_metrics_port_and_annotations(render: Render) -> None:
    deployment = by_kind(render(OPERATOR_CHART), "Deployment")["shop-microshop-operator"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MICROSHOP_OPERATOR_METRICS_PORT"] == "8081"
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "8081",
                                              "prometheus.io/path": "/metrics"}


def test_dashboards_are_generated_and_valid() -> None:
    assert dashboards.main(["--check"]) == 0, "run python -m devtools.dashboards"
    uids = set()
    for dashboard in dashboards.DASHBOARDS:
        model = json.loads(dashboard.path.read_text())
        assert model["uid"] not in uids
        uids.add(model["uid"])
        assert model["panels"], dashboard.uid
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), dashboard.uid
        for panel in model["panels"]:
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
    assert {d.path.parent.parent.name for d in dashboards.DASHBOARDS} == {SHOP_CHART.name, OPERATOR_CHART.name}


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each dashboard expression, as a recording rule (with Grafana's $__rate_interval as 5m): promtool parses it."""
    promtool = _promtool()
    rules = [{"record": f"microshop:dashboard_query_{i}",
              "expr": expr.replace(dashboards.RATE, "5m")}
             for i, expr in enumerate(e for d in dashboards.DASHBOARDS for e in dashboards.expressions(d))]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_shipped_rules_check_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    names = {r.get("alert") for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"MicroshopOrderPipelineStalled", "MicroshopDeadLetterQueueGrowing", "MicroshopHighErrorRatio"} <= names
    out = subprocess.run([promtool, "test", "rules", RULES_TEST.name], cwd=RULES_TEST.parent, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_local_scrape_config_is_valid(tmp_path: Path) -> None:
    promtool = _promtool()
    config = scrape_config(SERVICES)
    assert [c["labels"]["service"] for c in config["scrape_configs"][0]["static_configs"]] == sorted(SERVICES)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60,
                         check=False, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_load_generator_runs_the_make_load_locustfile_against_the_gateway(render: Render) -> None:
    objects = render(SHOP_CHART, OBSERVABILITY)
    locustfile = (SHOP_CHART / "files" / "locustfile.py").read_text()
    assert by_kind(objects, "ConfigMap")["shop-loadgen"]["data"]["locustfile.py"] == locustfile.rstrip("\n")
    from devtools.loadgen.__main__ import LOCUSTFILE
    assert LOCUSTFILE == SHOP_CHART / "files" / "locustfile.py", "make load and the chart run the same traffic"
    pod = by_kind(objects, "Deployment")["shop-loadgen"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "locustio/locust:2.47.0"
    assert container["args"] == ["--locustfile=/etc/locust/locustfile.py", "--headless",
                                 "--host=http://shop-gateway:8000", "--users=25", "--spawn-rate=0.5"]
    assert {"name": "locustfile", "mountPath": "/etc/locust", "readOnly": True} in container["volumeMounts"]
    # Locked down like the services (test_render.test_service_pods_are_locked_down).
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]


def test_load_generator_needs_the_gateway(helm: Path, tmp_path: Path) -> None:
    from tests.charts.conftest import run_helm

    out = run_helm(helm, "template", "shop", str(SHOP_CHART), tmp=tmp_path,
                   values={"loadGenerator": {"enabled": True}, "services": {"gateway": {"enabled": False}}})
    assert out.returncode != 0
    assert "loadGenerator.enabled needs services.gateway.enabled" in out.stderr, out.stderr
