"""Both charts lint strictly and render objects a Kubernetes API server would accept.

Every object is validated with kubernetes-validate --strict for Kubernetes 1.33 and 1.35. Kinds that
come from CRDs are validated against their CRD's schema: HTTPRoute against the Gateway API v1.6.1
schema vendored in tests/charts/schemas.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from shopkit.messaging.bus import CONSUMER_GRACE_SECONDS
from shopkit.messaging.outbox import STOP_SECONDS
from shopkit.settings import ServiceSettings
from tests.charts.conftest import OPERATOR_CHART, SHOP_CHART, Render, by_kind, run_helm
from tests.support.services import CHART_ORDER

KUBERNETES_VERSIONS = ("1.33.0", "1.35.0")
SCHEMAS = Path(__file__).parent / "schemas"
SERVICES = CHART_ORDER

EXTERNAL_INFRA: dict[str, Any] = {
    kind: {"managed": False, "external": {"secretName": "shop-infra", "secretKey": key}}
    for kind, key in (("mongodb", "mongo-url"), ("redis", "redis-url"), ("rabbitmq", "amqp-url"))
}
# Every toggle flipped away from its default.
FLIPPED: dict[str, Any] = {
    **EXTERNAL_INFRA,
    "ingress": {"enabled": False},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateway-infra",
                                                   "sectionName": "http"}],
                  "hostnames": ["shop.example.com"]},
    "services": {
        **{name: {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}} for name in SERVICES[:5]},
        "analytics": {"enabled": False},
    },
    "auth": {"jwtKeySecret": {"name": "shop-jwt", "create": False},
             "adminSecret": {"name": "shop-admin", "create": False, "email": "ops@example.com"}},
    "networkPolicies": {"enabled": False},
    "pdb": {"enabled": False},
}
# One component external, the others managed with credentials from a Secret the operator provides.
MIXED_INFRA: dict[str, Any] = {
    "mongodb": EXTERNAL_INFRA["mongodb"],
    "infraSecret": {"name": "shop-credentials", "create": False},
}
TLS_INGRESS: dict[str, Any] = {"ingress": {"enabled": True, "className": "cloud-provider-kind",
                                           "host": "shop.example.com",
                                           "tls": {"enabled": True, "secretName": "shop-tls"}}}
# Every observability option on (docs/observability.md; tests/charts/test_observability.py).
OBSERVABILITY: dict[str, Any] = {
    "metrics": {"scrapeAnnotations": True, "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                "podMonitor": {"enabled": True, "interval": "15s"}, "scrapeNamespaces": ["monitoring"]},
    "dashboards": {"enabled": True, "annotations": {"grafana_folder": "microshop"}},
    "tracing": {"otlpEndpoint": "http://otel-collector.observability:4318", "sampleRatio": 0.25},
    "loadGenerator": {"enabled": True, "users": 25, "spawnRate": 0.5},
}
SHOP_VARIANTS = {"defaults": {}, "flipped": FLIPPED, "tls": TLS_INGRESS, "mixed-infra": MIXED_INFRA,
                 "observability": OBSERVABILITY}
# MongoDB and RabbitMQ as three-member clusters (tests/charts/test_infra_clusters.py).
SHOP_VARIANTS["clusters"] = {"mongodb": {"replicas": 3}, "rabbitmq": {"replicas": 3}}
OPERATOR_VARIANTS: dict[str, dict[str, Any]] = {"defaults": {}, "namespaced": {"watchNamespaces": ["shop-a", "shop-b"]},
                                                "cluster-wide": {"clusterWide": True},
                                                "dashboards": {"dashboards": {"enabled": True},
                                                               "metrics": {"port": 9102, "scrapeAnnotations": False}}}


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {
        ("gateway.networking.k8s.io/v1", "HTTPRoute"):
            json.loads((SCHEMAS / "httproute-gateway.networking.k8s.io-v1.json").read_text()),
        # Written from the prometheus-operator CRDs (source in each file's $comment).
        ("monitoring.coreos.com/v1", "ServiceMonitor"):
            json.loads((SCHEMAS / "servicemonitor-monitoring.coreos.com-v1.json").read_text()),
        ("monitoring.coreos.com/v1", "PodMonitor"):
            json.loads((SCHEMAS / "podmonitor-monitoring.coreos.com-v1.json").read_text()),
    }
    for path in (OPERATOR_CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


CRD_SCHEMAS = _crd_schemas()


def validate(obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.Draft7Validator(CRD_SCHEMAS[key]).validate(obj)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("chart", [SHOP_CHART, OPERATOR_CHART], ids=lambda p: p.name)
def test_lint_strict(helm: Path, chart: Path) -> None:
    out = run_helm(helm, "lint", "--strict", str(chart))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("variant", sorted(SHOP_VARIANTS))
def test_shop_chart_objects_validate(render: Render, variant: str) -> None:
    objects = render(SHOP_CHART, SHOP_VARIANTS[variant])
    assert objects
    for obj in objects:
        try:
            validate(obj)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{variant}: {obj['kind']}/{obj['metadata']['name']}: {exc}")


@pytest.mark.parametrize("variant", sorted(OPERATOR_VARIANTS))
def test_operator_chart_objects_validate(render: Render, variant: str) -> None:
    objects = render(OPERATOR_CHART, OPERATOR_VARIANTS[variant])
    for obj in objects:
        try:
            validate(obj)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{variant}: {obj['kind']}/{obj['metadata']['name']}: {exc}")
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount"} <= kinds


def test_defaults_render_the_whole_shop(render: Render) -> None:
    objects = render(SHOP_CHART)
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == {f"shop-{s}" for s in SERVICES}
    assert set(by_kind(objects, "StatefulSet")) == {"shop-mongodb", "shop-redis", "shop-rabbitmq"}
    assert set(by_kind(objects, "PodDisruptionBudget")) == {f"shop-{s}" for s in SERVICES}
    assert set(by_kind(objects, "Secret")) == {"shop-jwt", "shop-admin", "shop-infra"}
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    assert not by_kind(objects, "HTTPRoute")
    ingress = by_kind(objects, "Ingress")["shop-gateway"]
    path = ingress["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/api"
    assert path["backend"]["service"]["name"] == "shop-gateway"


def test_every_object_has_the_standard_labels(render: Render) -> None:
    for values in SHOP_VARIANTS.values():
        for obj in render(SHOP_CHART, values, release="blue"):
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "microshop"
            assert labels["app.kubernetes.io/instance"] == "blue"
            assert labels["app.kubernetes.io/part-of"] == "microshop"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/component"]


def test_service_pods_are_locked_down(render: Render) -> None:
    objects = render(SHOP_CHART)
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(pods) == 9
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]["memory"]
            assert container["readinessProbe"]
            assert container["livenessProbe"]


def test_services_probe_their_health_endpoints_on_their_own_port(render: Render) -> None:
    ports = dict(zip(SERVICES, range(8000, 8006), strict=True))
    for name, deployment in by_kind(render(SHOP_CHART), "Deployment").items():
        service = name.removeprefix("shop-")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [service], "the one image runs `python -m <service>`"
        assert container["ports"][0]["containerPort"] == ports[service]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_mongodb_runs_as_a_replica_set_the_services_name(render: Render) -> None:
    objects = render(SHOP_CHART)
    mongo = by_kind(objects, "StatefulSet")["shop-mongodb"]
    container = mongo["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--replSet", "rs0"]
    assert "ensure-users.js" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert "rs.initiate" in by_kind(objects, "ConfigMap")["shop-mongodb-users"]["data"]["ensure-users.js"]
    assert mongo["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    env = {e["name"]: e for e in by_kind(objects, "Deployment")["shop-orders"]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert "replicaSet=rs0" in env["MICROSHOP_MONGO_URL"]["value"]


def test_external_infrastructure_comes_from_secrets(render: Render) -> None:
    objects = render(SHOP_CHART, EXTERNAL_INFRA)
    assert not by_kind(objects, "StatefulSet")
    env = {e["name"]: e for e in by_kind(objects, "Deployment")["shop-products"]["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["MICROSHOP_MONGO_URL"]["valueFrom"]["secretKeyRef"] == {"name": "shop-infra", "key": "mongo-url"}
    assert env["MICROSHOP_RABBITMQ_URL"]["valueFrom"]["secretKeyRef"]["key"] == "amqp-url"


def test_flipped_toggles(render: Render) -> None:
    objects = render(SHOP_CHART, FLIPPED)
    assert "shop-analytics" not in by_kind(objects, "Deployment")
    assert not by_kind(objects, "Ingress")
    assert not by_kind(objects, "Secret"), "the operator creates the Secrets when create is false"
    assert not by_kind(objects, "NetworkPolicy")
    assert not by_kind(objects, "PodDisruptionBudget")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert set(hpas) == {f"shop-{s}" for s in SERVICES[:5]}
    assert hpas["shop-gateway"]["spec"]["minReplicas"] == 2
    assert "replicas" not in by_kind(objects, "Deployment")["shop-gateway"]["spec"], "the HPA owns replicas"
    route = by_kind(objects, "HTTPRoute")["shop-gateway"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "shop-gateway", "port": 8000}]
    gateway_env = {e["name"]: e.get("value") for e in by_kind(objects, "Deployment")["shop-gateway"]["spec"]
                   ["template"]["spec"]["containers"][0]["env"]}
    assert gateway_env["MICROSHOP_ANALYTICS_ENABLED"] == "false"
    customers = by_kind(objects, "Deployment")["shop-customers"]["spec"]["template"]["spec"]
    assert customers["volumes"][1]["secret"]["secretName"] == "shop-jwt"


def test_service_env_override_replaces_the_chart_value(render: Render) -> None:
    objects = render(SHOP_CHART, {"services": {"orders": {"env": {"MICROSHOP_LOG_LEVEL": "DEBUG"}}}})
    env = by_kind(objects, "Deployment")["shop-orders"]["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert names.count("MICROSHOP_LOG_LEVEL") == 1, "duplicates break server-side apply"
    assert {"name": "MICROSHOP_LOG_LEVEL", "value": "DEBUG"} in env


def test_image_override_and_prebuilt_references(render: Render) -> None:
    objects = render(SHOP_CHART, {"image": {"repository": "registry.example/shop", "tag": "1.2.3"},
                                  "services": {"analytics": {"image": {"tag": "canary"}}}})
    images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for n, d in by_kind(objects, "Deployment").items()}
    assert images["shop-gateway"] == "registry.example/shop:1.2.3"
    assert images["shop-analytics"] == "registry.example/shop:canary"
    # skaffold rewrites a Shop's image.repository to a full reference; the chart keeps it whole.
    objects = render(SHOP_CHART, {"image": {"repository": "localhost:5001/microshop:abc@sha256:" + "0" * 64}})
    image = by_kind(objects, "Deployment")["shop-orders"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "localhost:5001/microshop:abc@sha256:" + "0" * 64


def _allowed_from(policy: dict[str, Any]) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])}


def test_network_policies(render: Render) -> None:
    policies = by_kind(render(SHOP_CHART), "NetworkPolicy")
    deny = policies["shop-default-deny"]
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]
    gateway_rules = policies["shop-gateway"]["spec"]["ingress"]
    assert all("from" not in rule for rule in gateway_rules), "the gateway is reachable from outside"
    assert _allowed_from(policies["shop-customers"]) == {"gateway", "products", "orders", "alerts", "analytics"}
    assert _allowed_from(policies["shop-products"]) == {"gateway", "orders"}
    for name in ("orders", "alerts", "analytics"):
        assert _allowed_from(policies[f"shop-{name}"]) == {"gateway"}
    assert "gateway" not in _allowed_from(policies["shop-mongodb"])
    # Exactly who uses what is checked against the apps in test_network_topology.py.
    assert _allowed_from(policies["shop-redis"]) == {"gateway", "customers", "products", "alerts", "analytics"}
    assert _allowed_from(policies["shop-rabbitmq"]) == {"products", "orders", "alerts", "analytics"}


def test_chart_generated_secrets(render: Render) -> None:
    secrets = by_kind(render(SHOP_CHART), "Secret")
    pem = base64.b64decode(secrets["shop-jwt"]["data"]["private.pem"]).decode()

    assert isinstance(load_pem_private_key(pem.encode(), password=None), Ed25519PrivateKey)
    assert len(base64.b64decode(secrets["shop-admin"]["data"]["password"])) == 24


def test_operator_rbac_scoping(render: Render) -> None:
    """Namespaced by default (the release namespace); a list of namespaces; cluster-wide only when asked.
    At the cluster scope, always and only: applying the Shop CRD by its name (the operator does at start)."""
    def args_of(objects: list[dict[str, Any]]) -> list[str]:
        return list(by_kind(objects, "Deployment")["shop-microshop-operator"]["spec"]["template"]["spec"][
            "containers"][0]["args"])

    crd_role = "shop-microshop-operator-shop-ns-crd"
    crd_rules = [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                  "resourceNames": ["shops.microshop.dev"], "verbs": ["patch", "create"]}]
    default = render(OPERATOR_CHART)
    assert set(by_kind(default, "ClusterRole")) == set(by_kind(default, "ClusterRoleBinding")) == {crd_role}, \
        "nothing cluster-wide but the CRD's apply"
    assert by_kind(default, "ClusterRole")[crd_role]["rules"] == crd_rules
    assert by_kind(default, "ClusterRoleBinding")[crd_role]["subjects"] == [
        {"kind": "ServiceAccount", "name": "shop-microshop-operator", "namespace": "shop-ns"}]
    roles = [o for o in default if o["kind"] == "Role"]
    assert {r["metadata"].get("namespace", "shop-ns") for r in roles} == {"shop-ns"}
    assert "--namespace=shop-ns" in args_of(default) and "--all-namespaces" not in args_of(default)
    namespaced = render(OPERATOR_CHART, {"watchNamespaces": ["shop-a", "shop-b"]})
    shop_roles = [o for o in namespaced if o["kind"] == "Role" and o["metadata"]["name"].endswith("-shops")]
    assert sorted(r["metadata"]["namespace"] for r in shop_roles) == ["shop-a", "shop-b"]
    assert set(by_kind(namespaced, "ClusterRole")) == {crd_role}
    assert {"--namespace=shop-a", "--namespace=shop-b"} <= set(args_of(namespaced))
    assert "--namespace=shop-ns" not in args_of(namespaced) and "--all-namespaces" not in args_of(namespaced)
    wide = render(OPERATOR_CHART, {"clusterWide": True})
    assert set(by_kind(wide, "ClusterRole")) == {"shop-microshop-operator-shops", crd_role}
    assert "--all-namespaces" in args_of(wide)
    for objects in (default, namespaced, wide):
        for role in [o for o in objects if o["kind"] in ("Role", "ClusterRole")]:
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], "least privilege: no wildcards"
    leader = by_kind(default, "Role")["shop-microshop-operator-leader-election"]["rules"]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [
        "shop-microshop-operator"], "verbs": ["get", "update"]} in leader


def test_operator_chart_refuses_contradictions(helm: Path, tmp_path: Path) -> None:
    for values, message in (({"clusterWide": True, "watchNamespaces": ["a"]}, "leave watchNamespaces empty"),
                            ({"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10,
                                                 "retryPeriodSeconds": 2}}, "retryPeriodSeconds <")):
        out = run_helm(helm, "template", "op", str(OPERATOR_CHART), values=values, tmp=tmp_path)
        assert out.returncode != 0 and message in out.stderr, out.stderr


def test_operator_deployment(render: Render) -> None:
    deployment = by_kind(render(OPERATOR_CHART), "Deployment")["shop-microshop-operator"]
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--standalone" in container["args"] and not any(a.startswith("--peering") for a in container["args"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MICROSHOP_OPERATOR_LEADER_ELECTION"] == "shop-microshop-operator"
    assert (env["MICROSHOP_OPERATOR_LEASE_DURATION_SECONDS"], env["MICROSHOP_OPERATOR_RENEW_DEADLINE_SECONDS"],
            env["MICROSHOP_OPERATOR_RETRY_PERIOD_SECONDS"]) == ("15", "10", "2")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _rendered_kinds(render: Render) -> set[tuple[str, str, str]]:
    """(apiVersion, kind, plural) of everything the shop chart renders for the operator (create: false Secrets)."""
    from microshop_operator.values import spec_to_values

    kinds = set()
    for values in SHOP_VARIANTS.values():
        for obj in render(SHOP_CHART, spec_to_values("shop", values)):
            plural = obj["kind"].lower() + ("es" if obj["kind"].endswith("s") else "s")
            kinds.add((obj["apiVersion"], obj["kind"], plural.replace("policys", "policies")))
    return kinds


def test_operator_rbac_covers_every_kind_the_shop_chart_renders(render: Render) -> None:
    rules = by_kind(render(OPERATOR_CHART), "Role")["shop-microshop-operator-shops"]["rules"]
    granted = {(group, resource) for rule in rules if {"create", "patch", "list", "delete"} <= set(rule["verbs"])
               for group in rule["apiGroups"] for resource in rule["resources"]}
    rendered = {(api_version.rpartition("/")[0], plural) for api_version, _, plural in _rendered_kinds(render)}
    assert rendered <= granted, rendered - granted


def test_the_operator_prunes_every_kind_the_shop_chart_renders(render: Render) -> None:
    from microshop_operator.reconcile import PRUNABLE_KINDS

    rendered = {(api_version, kind) for api_version, kind, _ in _rendered_kinds(render)}
    assert "Secret" not in {kind for _, kind in rendered}, "the operator makes the Secrets, never the chart"
    assert rendered <= {(k.api_version, k.kind) for k in PRUNABLE_KINDS}, "a kind the operator would never prune"


def test_services_shut_down_within_their_grace_period(render: Render) -> None:
    """preStop delay + requests in flight + deliveries in hand + the outbox's last round < the grace period."""
    http_seconds = ServiceSettings.model_fields["shutdown_timeout_seconds"].default
    for name, deployment in by_kind(render(SHOP_CHART), "Deployment").items():
        if name.removeprefix("shop-") not in SERVICES:
            continue
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env.get("MICROSHOP_SHUTDOWN_DRAIN_SECONDS", "0") == "0", "the preStop delay does the draining"
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 5, f"{name}: endpoints need a few seconds to drop the pod before it stops listening"
        # The outbox's last round, then (when it is cut short) the hand-back of what it holds: each bounded alike.
        needed = pre_stop + http_seconds + CONSUMER_GRACE_SECONDS + 2 * STOP_SECONDS
        assert pod["terminationGracePeriodSeconds"] > needed, f"{name}: {needed}s of shutdown, SIGKILLed earlier"
