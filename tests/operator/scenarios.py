"""The operator's behaviours as scenarios, run against the emulator (tests/operator) and a real cluster (tests/e2e)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.operator.api import APPS, CORE, SHOPS, Api, ApiFailure, eventually
from tests.support.services import BROKER_USERS, CHART_ORDER, DATABASE_USERS

SERVICES = CHART_ORDER
INFRA = ("mongodb", "redis", "rabbitmq")
INFRA_KEYS = {"mongodb-password", "mongodb-keyfile", "redis-password", "rabbitmq-password",
              *(f"mongodb-password-{s}" for s in DATABASE_USERS),
              *(f"rabbitmq-password-{s}" for s in BROKER_USERS)}
MANAGED_BY = "microshop-operator"
SHOP_LABEL = "microshop.dev/shop"


@dataclass
class Env:
    api: Api
    namespace: str
    timeout: float  # how long the operator may take to converge
    make_ready: Callable[[Api, str, str], Awaitable[None]]  # (api, namespace, shop): workloads report ready
    make_orders_unready: Callable[[Api, str, str], Awaitable[None]]  # orders stops being ready
    ready_timeout: float
    created: list[str] = field(default_factory=list)  # Shops to delete when the test ends
    base_spec: dict[str, Any] = field(default_factory=dict)  # e.g. the image a real cluster can run

    async def cleanup(self) -> None:
        for name in self.created:
            try:
                await self.api.delete(self.shop(name))
            except ApiFailure as exc:
                if exc.status != 404:
                    raise

    def shops(self) -> str:
        return f"{SHOPS}/namespaces/{self.namespace}/shops"

    def shop(self, name: str) -> str:
        return f"{self.shops()}/{name}"

    def deployment(self, name: str) -> str:
        return f"{APPS}/namespaces/{self.namespace}/deployments/{name}"

    def statefulset(self, name: str) -> str:
        return f"{APPS}/namespaces/{self.namespace}/statefulsets/{name}"

    def core(self, plural: str, name: str = "") -> str:
        return f"{CORE}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        result[key] = _merged(result[key], value) if isinstance(value, dict) and isinstance(
            result.get(key), dict) else value
    return result


def shop_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop", "metadata": {"name": name}, "spec": spec}


def condition(shop: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (shop.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


async def emulated_ready(api: Api, namespace: str, shop: str, *, except_component: str | None = None) -> None:
    """What the Deployment/StatefulSet controllers would report once every pod is ready."""
    for plural in ("deployments", "statefulsets"):
        for obj in await api.items(f"{APPS}/namespaces/{namespace}/{plural}", f"{SHOP_LABEL}={shop}"):
            component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if component == except_component else replicas
            await api.merge(f"{APPS}/namespaces/{namespace}/{plural}/{obj['metadata']['name']}/status",
                            {"status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": replicas,
                                        "availableReplicas": ready,
                                        "observedGeneration": obj["metadata"]["generation"]}})


async def emulated_orders_unready(api: Api, namespace: str, shop: str) -> None:
    await emulated_ready(api, namespace, shop, except_component="orders")


async def create_shop(env: Env, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    await env.api.create(env.shops(), shop_body(name, _merged(env.base_spec, spec)))
    env.created.append(name)

    async def reconciled() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        if shop and (shop.get("status") or {}).get("observedGeneration") == shop["metadata"]["generation"]:
            return shop
        return None

    return await eventually(reconciled, timeout=env.timeout, what=f"Shop {name} reconciled")


async def applying_a_shop_creates_owned_children(env: Env, name: str) -> None:
    shop = await create_shop(env, name, {"image": {"tag": "1.2.3"},
                                         "services": {"gateway": {"replicas": 2}}})
    uid = shop["metadata"]["uid"]
    deployments = await env.api.items(f"{APPS}/namespaces/{env.namespace}/deployments", f"{SHOP_LABEL}={name}")
    statefulsets = await env.api.items(f"{APPS}/namespaces/{env.namespace}/statefulsets", f"{SHOP_LABEL}={name}")
    services = await env.api.items(env.core("services"), f"{SHOP_LABEL}={name}")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == set(SERVICES)
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in statefulsets} == set(INFRA)
    assert len(services) == len(SERVICES) + len(INFRA)
    for obj in [*deployments, *statefulsets, *services]:
        refs = obj["metadata"]["ownerReferences"]
        assert refs == [{"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop", "name": name, "uid": uid,
                         "controller": True, "blockOwnerDeletion": True}], obj["metadata"]["name"]
    gateway = next(d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway")
    assert gateway["spec"]["replicas"] == 2
    images = {c["image"] for c in gateway["spec"]["template"]["spec"]["containers"]}
    assert images == {"microshop:1.2.3"}, images

    jwt = await env.api.get(env.core("secrets", f"{name}-jwt"))
    admin = await env.api.get(env.core("secrets", f"{name}-admin"))
    assert jwt is not None and admin is not None
    assert base64.b64decode(jwt["data"]["private.pem"]).startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(base64.b64decode(admin["data"]["password"])) >= 24
    assert jwt["metadata"]["ownerReferences"][0]["uid"] == uid

    infra = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert infra is not None, "the managed infrastructure's credentials"
    assert set(infra["data"]) == INFRA_KEYS
    for key, value in infra["data"].items():
        assert base64.b64decode(value).decode().isalnum(), key
    assert not infra["metadata"].get("ownerReferences"), "lives as long as the volumes, not the Shop"
    assert infra["metadata"]["labels"][SHOP_LABEL] == name
    await asyncio.sleep(2)  # resyncs prune what the chart does not render: never these Secrets
    for secret in (jwt, admin, infra):
        again = await env.api.get(env.core("secrets", secret["metadata"]["name"]))
        assert again is not None and again["metadata"]["uid"] == secret["metadata"]["uid"], "pruned and re-made"
    mongo = next(s for s in statefulsets if s["metadata"]["labels"]["app.kubernetes.io/component"] == "mongodb")
    env_vars = {e["name"]: e for e in mongo["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["MONGO_INITDB_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{name}-infra", "key": "mongodb-password"}


async def secrets_are_never_overwritten(env: Env, name: str) -> None:
    pem = b"-----BEGIN PRIVATE KEY-----\nmine\n-----END PRIVATE KEY-----\n"
    await env.api.create(env.core("secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-jwt"},
        "data": {"private.pem": base64.b64encode(pem).decode()}})
    mine = {key: base64.b64encode(f"my{key.replace('-', '')}".encode()).decode() for key in INFRA_KEYS}
    await env.api.create(env.core("secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-infra"}, "data": mine})
    before = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert before is not None
    await create_shop(env, name, {})
    await asyncio.sleep(2)  # a few resyncs (1 s in the emulator tests) more
    jwt = await env.api.get(env.core("secrets", f"{name}-jwt"))
    assert jwt is not None and base64.b64decode(jwt["data"]["private.pem"]) == pem
    assert await env.api.get(env.core("secrets", f"{name}-admin")) is not None
    infra = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert infra is not None and infra["data"] == mine
    assert infra["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "not even patched"


async def own_infra_secret_gains_the_keys_a_newer_chart_references(env: Env, name: str) -> None:
    """An infra Secret an older operator made for this Shop (its labels) lacks the per-service passwords:
    they are added, the values it had stay, and the Shop is not Degraded."""
    old = {key: base64.b64encode(f"old{key.replace('-', '')}".encode()).decode()
           for key in ("mongodb-password", "mongodb-keyfile", "redis-password", "rabbitmq-password")}
    await env.api.create(env.core("secrets"), {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": old,
        "metadata": {"name": f"{name}-infra",
                     "labels": {SHOP_LABEL: name, "app.kubernetes.io/managed-by": MANAGED_BY}}})
    await create_shop(env, name, {})

    async def completed() -> dict[str, Any] | None:
        infra = await env.api.get(env.core("secrets", f"{name}-infra"))
        return infra if infra and set(infra["data"]) == INFRA_KEYS else None

    infra = await eventually(completed, timeout=env.timeout, what="the per-service keys added")
    assert {key: infra["data"][key] for key in old} == old, "existing values never change"
    for key in INFRA_KEYS - set(old):
        assert base64.b64decode(infra["data"][key]).decode().isalnum(), key
    shop = await env.api.get(env.shop(name))
    assert shop is not None and condition(shop, "Degraded").get("status") != "True", condition(shop, "Degraded")


async def incomplete_infra_secret_degrades(env: Env, name: str) -> None:
    """An existing infra Secret without a key the pods need: Degraded, naming the key; never completed by us."""
    partial = {key: base64.b64encode(b"mine").decode() for key in INFRA_KEYS - {"redis-password"}}
    await env.api.create(env.core("secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-infra"}, "data": partial})
    await env.api.create(env.shops(), shop_body(name, env.base_spec))
    env.created.append(name)

    async def degraded() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        return shop if condition(shop or {}, "Degraded").get("status") == "True" else None

    shop = await eventually(degraded, timeout=env.timeout, what="Degraded=True with an incomplete infra Secret")
    cond = condition(shop, "Degraded")
    assert cond["reason"] == "SecretFailed" and "redis-password" in cond["message"], cond
    infra = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert infra is not None and infra["data"] == partial, "the operator never changes an existing Secret"

    await env.api.merge(env.core("secrets", f"{name}-infra"),
                        {"data": {"redis-password": base64.b64encode(b"mine").decode()}})

    async def recovered() -> bool:
        shop = await env.api.get(env.shop(name))
        return bool(shop and condition(shop, "Degraded").get("status") == "False"
                    and (shop.get("status") or {}).get("observedGeneration") == shop["metadata"]["generation"])

    await eventually(recovered, timeout=env.timeout, what="Degraded=False once the key is there")


async def external_infrastructure_needs_no_infra_secret(env: Env, name: str) -> None:
    external = {kind: {"managed": False, "external": {"secretName": "urls", "secretKey": kind}} for kind in INFRA}
    await create_shop(env, name, external)
    assert await env.api.get(env.core("secrets", f"{name}-jwt")) is not None
    assert await env.api.get(env.core("secrets", f"{name}-infra")) is None


async def changing_replicas_and_tag_updates_children(env: Env, name: str) -> None:
    await create_shop(env, name, {})
    patched = await env.api.merge(env.shop(name), {"spec": {"image": {"tag": "2.0.0"},
                                                            "services": {"orders": {"replicas": 3}}}})
    generation = patched["metadata"]["generation"]

    async def updated() -> bool:
        orders = await env.api.get(env.deployment(f"{name}-orders"))
        shop = await env.api.get(env.shop(name))
        return bool(orders and shop and orders["spec"]["replicas"] == 3
                    and orders["spec"]["template"]["spec"]["containers"][0]["image"] == "microshop:2.0.0"
                    and shop["status"].get("observedGeneration") == generation)

    await eventually(updated, timeout=env.timeout, what="orders scaled to 3 on tag 2.0.0, observedGeneration")


async def drift_is_repaired(env: Env, name: str) -> None:
    await create_shop(env, name, {})
    gateway = await env.api.get(env.deployment(f"{name}-gateway"))
    assert gateway is not None
    await env.api.delete(env.deployment(f"{name}-gateway"))

    async def restored() -> bool:
        again = await env.api.get(env.deployment(f"{name}-gateway"))
        return bool(again and again["metadata"]["uid"] != gateway["metadata"]["uid"])

    await eventually(restored, timeout=env.timeout, what="the deleted gateway Deployment to be re-created")

    await env.api.merge(env.deployment(f"{name}-products"), {"spec": {"replicas": 7}})

    async def reverted() -> bool:
        products = await env.api.get(env.deployment(f"{name}-products"))
        return bool(products and products["spec"]["replicas"] == 1)

    await eventually(reverted, timeout=env.timeout, what="hand-edited replicas reverted to the spec's 1")


async def readiness_is_reported(env: Env, name: str) -> None:
    await create_shop(env, name, {})
    await env.make_ready(env.api, env.namespace, name)

    async def ready() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        ok = shop and condition(shop, "Ready").get("status") == "True" and shop["status"]["phase"] == "Ready"
        return shop if ok else None

    shop = await eventually(ready, timeout=env.ready_timeout, what="Shop Ready=True, phase Ready")
    assert condition(shop, "InfrastructureReady")["status"] == "True"
    assert condition(shop, "Degraded")["status"] == "False"
    assert condition(shop, "Progressing")["status"] == "False"
    assert shop["status"]["components"]["gateway"] == {"kind": "Deployment", "ready": 1, "desired": 1}
    assert shop["status"]["components"]["mongodb"]["kind"] == "StatefulSet", "the real kind, not the list item's"
    assert shop["status"]["url"]
    since = condition(shop, "Ready")["lastTransitionTime"]

    async def ready_event() -> bool:
        events = await env.api.items(env.core("events"))
        return any(e.get("involvedObject", {}).get("name") == name and e.get("reason") == "AllComponentsReady"
                   and e.get("type") == "Normal" for e in events)

    await eventually(ready_event, timeout=env.timeout, what="a Normal AllComponentsReady Event on the Shop")

    await env.make_orders_unready(env.api, env.namespace, name)

    async def not_ready() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        cond = condition(shop or {}, "Ready")
        return cond if cond.get("status") == "False" else None

    cond = await eventually(not_ready, timeout=env.ready_timeout, what="Ready=False once orders is not ready")
    assert cond["reason"] == "ComponentsNotReady"
    assert "orders" in cond["message"], cond
    assert "gateway" not in cond["message"]
    assert cond["lastTransitionTime"] >= since


async def disabling_analytics_prunes_it(env: Env, name: str) -> None:
    await create_shop(env, name, {})
    assert await env.api.get(env.deployment(f"{name}-analytics")) is not None
    await env.api.merge(env.shop(name), {"spec": {"services": {"analytics": {"enabled": False}}}})

    async def pruned() -> bool:
        shop = await env.api.get(env.shop(name))
        return bool(await env.api.get(env.deployment(f"{name}-analytics")) is None
                    and await env.api.get(env.core("services", f"{name}-analytics")) is None
                    and shop and "analytics" not in shop["status"].get("components", {}))

    await eventually(pruned, timeout=env.timeout, what="analytics Deployment and Service pruned")
    assert await env.api.get(env.deployment(f"{name}-gateway")) is not None


async def unrenderable_spec_degrades(env: Env, name: str, healthy: Callable[[], Awaitable[bool]]) -> None:
    await create_shop(env, name, {})
    await env.api.merge(env.shop(name), {"spec": {"services": {"gateway": {
        "resources": {"requests": {"cpu": "lots"}}}}}})

    async def degraded() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        cond = condition(shop or {}, "Degraded")
        return shop if cond.get("status") == "True" else None

    shop = await eventually(degraded, timeout=env.timeout, what="Degraded=True after an unrenderable spec")
    cond = condition(shop, "Degraded")
    assert cond["reason"] == "RenderFailed"
    assert "cpu" in cond["message"] and "lots" in cond["message"], cond
    assert shop["status"]["phase"] == "Degraded"
    assert shop["status"]["observedGeneration"] < shop["metadata"]["generation"]
    assert await healthy(), "the operator's liveness endpoint failed while a Shop is degraded"

    await env.api.merge(env.shop(name), {"spec": {"services": {"gateway": {
        "resources": {"requests": {"cpu": "100m"}}}}}})

    async def recovered() -> bool:
        shop = await env.api.get(env.shop(name))
        return bool(shop and condition(shop, "Degraded").get("status") == "False"
                    and shop["status"]["observedGeneration"] == shop["metadata"]["generation"])

    await eventually(recovered, timeout=env.timeout, what="Degraded=False after fixing the spec")


async def invalid_spec_is_rejected(env: Env, name: str) -> None:
    for spec in ({"services": {"gateway": {"replicas": -1}}}, {"image": {"pullPolicy": "Sometimes"}},
                 {"logLevel": "LOUD"}):
        with pytest.raises(ApiFailure) as failure:
            await env.api.create(env.shops(), shop_body(name, spec))
        assert failure.value.status == 422, failure.value


async def _claim_of(env: Env, shop: str, component: str) -> str:
    """The PVC a StatefulSet's controller makes from its volumeClaimTemplates (ordinal 0), made here if absent
    (the emulator runs no controllers), with the template's labels as the controller copies them."""
    sts = await env.api.get(env.statefulset(f"{shop}-{component}"))
    assert sts is not None, f"the {component} StatefulSet"
    template = sts["spec"]["volumeClaimTemplates"][0]
    name = f"{template['metadata']['name']}-{shop}-{component}-0"
    if await env.api.get(env.core("persistentvolumeclaims", name)) is None:
        await env.api.create(env.core("persistentvolumeclaims"), {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": template["metadata"].get("labels") or {}},
            "spec": template["spec"]})
    return name


async def deleting_a_shop_completes(env: Env, name: str, *, delete_volumes: bool) -> None:
    await create_shop(env, name, {"deletion": {"deletePersistentVolumeClaims": delete_volumes}})
    claim = await _claim_of(env, name, "mongodb")
    # A Helm release of the same name labels its PVCs with the same instance label: never the Shop's.
    foreign = f"data-{name}-helm-0"
    await env.api.create(env.core("persistentvolumeclaims"), {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": foreign, "labels": {"app.kubernetes.io/instance": name,
                                                 "app.kubernetes.io/component": "mongodb"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    shop = await env.api.get(env.shop(name))
    assert shop is not None
    if delete_volumes:
        async def finalized() -> bool:
            shop = await env.api.get(env.shop(name))
            return bool(shop and shop["metadata"].get("finalizers"))

        await eventually(finalized, timeout=env.timeout, what="the volume clean-up finalizer")
    else:
        assert not shop["metadata"].get("finalizers"), "no clean-up to do: no finalizer"
    await env.api.delete(env.shop(name))

    async def gone() -> bool:
        return await env.api.get(env.shop(name)) is None

    await eventually(gone, timeout=env.timeout, what=f"Shop {name} to be deleted")

    async def children_gone() -> bool:
        return not await env.api.items(f"{APPS}/namespaces/{env.namespace}/deployments", f"{SHOP_LABEL}={name}")

    await eventually(children_gone, timeout=env.timeout, what="owned Deployments garbage-collected")
    pvc = await env.api.get(env.core("persistentvolumeclaims", claim))
    infra = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert await env.api.get(env.core("persistentvolumeclaims", foreign)) is not None, "another release's PVC"
    await env.api.delete(env.core("persistentvolumeclaims", foreign))
    if delete_volumes:
        assert pvc is None or pvc["metadata"].get("deletionTimestamp"), "PVC kept despite deletePersistentVolumeClaims"
        assert infra is None or infra["metadata"].get("deletionTimestamp"), "the credentials go with the volumes"
    else:
        assert pvc is not None, "the data volume was deleted though the spec did not ask for it"
        assert infra is not None, "the kept volumes' credentials must survive the Shop"


async def paused_shop_does_not_claim_new_generations(env: Env, name: str) -> None:
    """While paused nothing is applied: observedGeneration stays at the last applied one, a Paused condition says so."""
    shop = await create_shop(env, name, {})
    applied = shop["metadata"]["generation"]
    await env.api.merge(env.shop(name), {"spec": {"paused": True}})
    patched = await env.api.merge(env.shop(name), {"spec": {"services": {"orders": {"replicas": 3}}}})

    async def paused() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        cond = condition(shop or {}, "Paused")
        ok = cond.get("status") == "True" and cond.get("observedGeneration") == patched["metadata"]["generation"]
        return shop if ok else None

    shop = await eventually(paused, timeout=env.timeout, what="Paused=True for the latest generation")
    assert shop["status"]["observedGeneration"] == applied, "a paused generation is not applied"
    assert shop["status"]["phase"] == "Paused"
    assert condition(shop, "Ready").get("observedGeneration", applied) <= applied, "Ready speaks of what runs"
    orders = await env.api.get(env.deployment(f"{name}-orders"))
    assert orders is not None and orders["spec"]["replicas"] == 1, "nothing applied while paused"

    resumed = await env.api.merge(env.shop(name), {"spec": {"paused": False}})

    async def applied_again() -> bool:
        shop = await env.api.get(env.shop(name))
        orders = await env.api.get(env.deployment(f"{name}-orders"))
        return bool(shop and orders and shop["status"].get("observedGeneration") == resumed["metadata"]["generation"]
                    and condition(shop, "Paused").get("status") == "False" and orders["spec"]["replicas"] == 3)

    await eventually(applied_again, timeout=env.timeout, what="the spec applied once unpaused")


async def storage_change_is_rejected(env: Env, name: str) -> None:
    """Volume claims are immutable: a storage change is refused by the API server with a clear message."""
    await create_shop(env, name, {})
    with pytest.raises(ApiFailure) as refused:
        await env.api.merge(env.shop(name), {"spec": {"mongodb": {"storage": {"size": "20Gi"}}}})
    assert refused.value.status == 422, refused.value
    message = str(refused.value.body.get("message"))
    assert "storage" in message and "cannot change" in message, message
    shop = await env.api.get(env.shop(name))
    assert shop is not None and shop["spec"]["mongodb"]["storage"]["size"] == "2Gi"


async def optional_kinds_are_applied_and_pruned(env: Env, name: str) -> None:
    """HorizontalPodAutoscaler, HTTPRoute (Gateway API), the Grafana dashboards' ConfigMaps and the Prometheus
    Operator's ServiceMonitor/PodMonitor: applied when enabled, pruned when disabled."""
    await create_shop(env, name, {
        "services": {"orders": {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 3}}},
        "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}], "hostnames": ["shop.example.com"]},
        "dashboards": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}})
    ns = env.namespace
    hpa = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}-orders"
    route = f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes/{name}-gateway"
    dashboard = f"/api/v1/namespaces/{ns}/configmaps/{name}-dashboard-microshop-overview"
    service_monitor = f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/{name}-metrics"
    pod_monitor = f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/podmonitors/{name}-metrics"
    optional = (hpa, route, dashboard, service_monitor, pod_monitor)
    for path in optional:
        assert await env.api.get(path) is not None, path
    shop = await env.api.get(env.shop(name))
    assert shop is not None and shop["status"]["url"] == "http://shop.example.com/api"
    await env.api.merge(env.shop(name), {"spec": {
        "services": {"orders": {"autoscaling": {"enabled": False}}}, "httpRoute": {"enabled": False},
        "dashboards": {"enabled": False},
        "metrics": {"serviceMonitor": {"enabled": False}, "podMonitor": {"enabled": False}}}})

    async def pruned() -> bool:
        return all([await env.api.get(path) is None for path in optional])

    await eventually(pruned, timeout=env.timeout, what="the HPA, HTTPRoute, dashboards and monitors pruned")


async def claims_of_an_existing_statefulset_are_kept(env: Env, name: str) -> None:
    """A StatefulSet made before the claims carried the ownership labels (immutable since): still applied."""
    await env.api.create(env.shops(), shop_body(name, _merged(env.base_spec, {"paused": True})))
    env.created.append(name)

    async def paused() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        return shop if condition(shop or {}, "Paused").get("status") == "True" else None

    shop = await eventually(paused, timeout=env.timeout, what="the paused Shop's Paused condition")
    owner = {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop", "name": name, "uid": shop["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    chart_labels = {"app.kubernetes.io/name": "microshop", "app.kubernetes.io/instance": name,
                    "app.kubernetes.io/component": "redis"}
    legacy_claims = [{"metadata": {"name": "data", "labels": chart_labels},  # no ownership labels
                      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "512Mi"}}}}]
    await env.api.create(f"{APPS}/namespaces/{env.namespace}/statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": f"{name}-redis", "labels": {SHOP_LABEL: name}, "ownerReferences": [owner]},
        "spec": {"serviceName": f"{name}-redis", "replicas": 1, "selector": {"matchLabels": chart_labels},
                 "template": {"metadata": {"labels": chart_labels},
                              "spec": {"containers": [{"name": "redis", "image": "legacy"}]}},
                 "volumeClaimTemplates": legacy_claims}})
    resumed = await env.api.merge(env.shop(name), {"spec": {"paused": False}})

    async def applied() -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        ok = shop and (shop.get("status") or {}).get("observedGeneration") == resumed["metadata"]["generation"]
        return shop if ok else None

    shop = await eventually(applied, timeout=env.timeout, what="the Shop applied over the legacy StatefulSet")
    assert condition(shop, "Degraded")["status"] == "False", condition(shop, "Degraded")
    redis = await env.api.get(env.statefulset(f"{name}-redis"))
    assert redis is not None and redis["spec"]["volumeClaimTemplates"] == legacy_claims, "claims untouched"
    assert redis["spec"]["template"]["spec"]["containers"][0]["image"] != "legacy", "the rest applied"


async def clustered_infrastructure_reports_member_health(env: Env, name: str) -> None:
    """spec.<kind>.replicas: 3 runs three members each; status.infrastructure says how many are ready and
    whether a majority is (the cluster serves), from each StatefulSet's status."""
    for replicas in (2, 5):
        with pytest.raises(ApiFailure) as failure:
            await env.api.create(env.shops(), shop_body(name, {"rabbitmq": {"replicas": replicas}}))
        assert failure.value.status == 422, failure.value
    await create_shop(env, name, {"mongodb": {"replicas": 3}, "rabbitmq": {"replicas": 3}})
    for kind in ("mongodb", "rabbitmq"):
        sts = await env.api.get(env.statefulset(f"{name}-{kind}"))
        assert sts is not None and sts["spec"]["replicas"] == 3
    redis = await env.api.get(env.statefulset(f"{name}-redis"))
    assert redis is not None and redis["spec"]["replicas"] == 1
    infra = await env.api.get(env.core("secrets", f"{name}-infra"))
    assert infra is not None and set(infra["data"]) == INFRA_KEYS | {"rabbitmq-erlang-cookie"}
    await env.make_ready(env.api, env.namespace, name)

    async def infrastructure(want: dict[str, Any]) -> dict[str, Any] | None:
        shop = await env.api.get(env.shop(name))
        status = (shop or {}).get("status") or {}
        return shop if status.get("infrastructure", {}).get("rabbitmq") == want else None

    shop = await eventually(lambda: infrastructure({"replicas": 3, "readyReplicas": 3, "quorum": True}),
                            timeout=env.ready_timeout, what="3 of 3 RabbitMQ members ready")
    assert shop["status"]["infrastructure"]["mongodb"] == {"replicas": 3, "readyReplicas": 3, "quorum": True}
    assert shop["status"]["infrastructure"]["redis"] == {"replicas": 1, "readyReplicas": 1, "quorum": True}
    assert condition(shop, "InfrastructureReady")["status"] == "True"

    sts_status = f"{env.statefulset(f'{name}-rabbitmq')}/status"
    for ready, quorum in ((2, True), (1, False)):
        await env.api.merge(sts_status, {"status": {"readyReplicas": ready, "availableReplicas": ready}})

        async def reached(r: int = ready, q: bool = quorum) -> dict[str, Any] | None:
            return await infrastructure({"replicas": 3, "readyReplicas": r, "quorum": q})

        shop = await eventually(reached, timeout=env.ready_timeout, what=f"{ready} of 3 RabbitMQ members ready")
        cond = condition(shop, "InfrastructureReady")
        assert cond["status"] == "False" and f"rabbitmq {ready}/3 ready" in cond["message"], cond


# The one list both suites run: tests/operator against the emulator (all of them) and tests/e2e against
# a real cluster (those marked ``e2e``). The unrenderable-spec scenario needs each suite's own liveness
# check, so each suite calls it itself.

def shop_name() -> str:
    return f"shop-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Env, str], Awaitable[None]]
    e2e: bool = False  # also run on a real cluster

    def __str__(self) -> str:
        return self.name


async def _deleting_keeps_volumes(env: Env, name: str) -> None:
    await deleting_a_shop_completes(env, name, delete_volumes=False)


async def _deleting_deletes_volumes(env: Env, name: str) -> None:
    await deleting_a_shop_completes(env, name, delete_volumes=True)


SCENARIOS = (
    Scenario("applying_a_shop_creates_owned_children", applying_a_shop_creates_owned_children, e2e=True),
    Scenario("existing_secrets_are_never_overwritten", secrets_are_never_overwritten),
    Scenario("own_infra_secret_gains_the_keys_a_newer_chart_references",
             own_infra_secret_gains_the_keys_a_newer_chart_references),
    Scenario("incomplete_infra_secret_degrades_until_completed", incomplete_infra_secret_degrades),
    Scenario("external_infrastructure_needs_no_infra_secret", external_infrastructure_needs_no_infra_secret),
    Scenario("changing_replicas_and_tag_updates_children", changing_replicas_and_tag_updates_children, e2e=True),
    Scenario("deleted_and_edited_children_are_restored", drift_is_repaired, e2e=True),
    Scenario("readiness_is_reported_per_component", readiness_is_reported, e2e=True),
    Scenario("disabling_analytics_prunes_its_objects", disabling_analytics_prunes_it, e2e=True),
    Scenario("invalid_spec_is_rejected_by_the_schema", invalid_spec_is_rejected, e2e=True),
    Scenario("deleting_a_shop_completes-keep-volumes", _deleting_keeps_volumes, e2e=True),
    Scenario("deleting_a_shop_completes-delete-volumes", _deleting_deletes_volumes, e2e=True),
    Scenario("paused_shop_does_not_claim_new_generations", paused_shop_does_not_claim_new_generations),
    Scenario("storage_change_is_rejected", storage_change_is_rejected),
    Scenario("optional_kinds_are_applied_and_pruned", optional_kinds_are_applied_and_pruned),
    Scenario("claims_of_an_existing_statefulset_are_kept", claims_of_an_existing_statefulset_are_kept),
    Scenario("clustered_infrastructure_reports_member_health", clustered_infrastructure_reports_member_health),
)
