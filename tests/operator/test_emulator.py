"""The emulator itself behaves like kube-apiserver in each way the operator's tests rely on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
import yaml

from tests.operator.api import Api, ApiFailure
from tests.operator.emulator import ClusterEmulator

pytestmark = pytest.mark.asyncio(loop_scope="session")

NS = "emu"
CORE = f"/api/v1/namespaces/{NS}"
APPS = f"/apis/apps/v1/namespaces/{NS}"
SHOPS = f"/apis/microshop.dev/v1alpha1/namespaces/{NS}/shops"
SA = "system:serviceaccount:emu:robot"


@pytest_asyncio.fixture(loop_scope="session")
async def emu() -> AsyncIterator[tuple[ClusterEmulator, Api]]:
    async with ClusterEmulator() as emulator, kmock.Server(emulator):
        api = Api(str(emulator.url))
        try:
            yield emulator, api
        finally:
            await api.close()


def deployment(name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


async def apply(api: Api, path: str, body: dict[str, Any], manager: str, *, force: bool = False,
                token: str | None = None) -> Any:
    query = f"?fieldManager={manager}" + ("&force=true" if force else "")
    headers = {"Content-Type": "application/apply-patch+yaml"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with api.session.patch(api.base_url + path + query, data=yaml.safe_dump(body), headers=headers) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            raise ApiFailure(resp.status, data)
        return data


async def as_user(api: Api, token: str, method: str, path: str, body: Any = None,
                  content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    async with api.session.request(method, api.base_url + path, json=body, headers=headers) as resp:
        data = await resp.json(content_type=None)
        if resp.status >= 400:
            raise ApiFailure(resp.status, data)
        return data


async def watch_lines(api: Api, path: str, limit: int, timeout: float = 10) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with api.session.get(api.base_url + path) as resp:
        async def read() -> None:
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))
                    if len(events) >= limit:
                        return
        await asyncio.wait_for(read(), timeout=timeout)
    return events


async def test_list_items_of_builtin_kinds_have_no_kind(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    await api.create(f"{APPS}/deployments", deployment("web"))
    await api.create(SHOPS, {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop", "metadata": {"name": "s"},
                             "spec": {}})
    listing = await api.request("GET", f"{APPS}/deployments")
    assert (listing["apiVersion"], listing["kind"]) == ("apps/v1", "DeploymentList")
    assert listing["items"] and all("kind" not in i and "apiVersion" not in i for i in listing["items"])
    single = await api.get(f"{APPS}/deployments/web")
    assert single is not None and single["kind"] == "Deployment"
    shops = await api.request("GET", SHOPS)
    assert all(i["kind"] == "Shop" and i["apiVersion"] == "microshop.dev/v1alpha1" for i in shops["items"]), \
        "custom resources keep them (they are unstructured)"


async def test_watch_bookmarks_and_410_gone(emu: tuple[ClusterEmulator, Api]) -> None:
    cluster, api = emu
    cluster.bookmark_interval = 0.2
    first = await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": "a"}})
    rv = first["metadata"]["resourceVersion"]
    await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})
    events = await watch_lines(api, f"{CORE}/configmaps?watch=true&resourceVersion={rv}&allowWatchBookmarks=true",
                               limit=2)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "b"
    assert events[1]["type"] == "BOOKMARK" and int(events[1]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    compacted = cluster.compact()
    gone = await watch_lines(api, f"{CORE}/configmaps?watch=true&resourceVersion={rv}", limit=1)
    assert gone[0]["type"] == "ERROR" and gone[0]["object"]["code"] == 410, gone
    assert "too old resource version" in gone[0]["object"]["message"]
    await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    fresh = await watch_lines(api, f"{CORE}/configmaps?watch=true&resourceVersion={compacted}", limit=1)
    assert fresh[0]["type"] == "ADDED" and fresh[0]["object"]["metadata"]["name"] == "c"


async def test_generation_moves_on_spec_changes_only(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    created = await api.create(f"{APPS}/deployments", deployment("gen"))
    assert created["metadata"]["generation"] == 1
    labelled = await api.merge(f"{APPS}/deployments/gen", {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1
    status = await api.merge(f"{APPS}/deployments/gen/status", {"status": {"readyReplicas": 1}})
    assert status["metadata"]["generation"] == 1
    scaled = await api.merge(f"{APPS}/deployments/gen", {"spec": {"replicas": 3}})
    assert scaled["metadata"]["generation"] == 2
    same = await api.merge(f"{APPS}/deployments/gen", {"spec": {"replicas": 3}})
    assert same["metadata"]["resourceVersion"] == scaled["metadata"]["resourceVersion"], "a no-op is no write"
    service = await api.create(f"{CORE}/services", {"apiVersion": "v1", "kind": "Service",
                                                    "metadata": {"name": "gen"}, "spec": {"ports": [{"port": 80}]}})
    assert "generation" not in service["metadata"], "kinds that do not track it have none"


async def test_server_side_apply_conflicts_unless_forced(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    path = f"{APPS}/deployments/ssa"
    await apply(api, path, deployment("ssa", 1, {"mine": "1", "gone-later": "1"}), "alice")
    await api.request("PATCH", path + "?fieldManager=bob", {"spec": {"replicas": 7}, "metadata": {"labels": {
        "bobs": "1"}}}, "application/merge-patch+json")
    with pytest.raises(ApiFailure) as conflict:
        await apply(api, path, deployment("ssa", 1, {"mine": "1", "gone-later": "1"}), "alice")
    assert conflict.value.status == 409
    message = conflict.value.body["message"]
    assert 'conflict with "bob"' in message and ".spec.replicas" in message, message
    same = await apply(api, path, deployment("ssa", 7, {"mine": "1", "gone-later": "1"}), "alice")
    assert same["spec"]["replicas"] == 7, "the same value as the owner's is no conflict (shared)"
    forced = await apply(api, path, deployment("ssa", 2, {"mine": "1"}), "alice", force=True)
    assert forced["spec"]["replicas"] == 2
    assert forced["metadata"]["labels"] == {"mine": "1", "bobs": "1"}, "alice's dropped label goes, bob's stays"
    owners = {(m["manager"], m["operation"]): m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:replicas" in owners[("alice", "Apply")]["f:spec"]
    assert "f:replicas" not in owners[("bob", "Update")].get("f:spec", {}), "forced: ownership moved to alice"
    with pytest.raises(ApiFailure) as no_manager:
        await api.request("PATCH", path, deployment("ssa"), "application/apply-patch+yaml")
    assert no_manager.value.status == 422


async def test_garbage_collection_by_owner_references(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu

    async def pair(name: str, *, block: bool, finalizer: bool) -> tuple[str, str]:
        owner = await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                        "metadata": {"name": f"{name}-owner"}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": f"{name}-owner", "uid": owner["metadata"]["uid"],
               "blockOwnerDeletion": block}
        await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"{name}-dep", "ownerReferences": [ref], "finalizers": ["test/hold"] if finalizer else []}})
        return f"{CORE}/configmaps/{name}-owner", f"{CORE}/configmaps/{name}-dep"

    owner, dep = await pair("bg", block=False, finalizer=False)
    await api.delete(owner)
    assert await api.get(owner) is None and await api.get(dep) is None, "background: the dependent follows"

    owner, dep = await pair("fg", block=True, finalizer=True)
    await api.request("DELETE", owner, {"kind": "DeleteOptions", "apiVersion": "v1",
                                        "propagationPolicy": "Foreground"})
    held, dependent = await api.get(owner), await api.get(dep)
    assert held is not None and held["metadata"]["deletionTimestamp"], "blocked by a blockOwnerDeletion dependent"
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    assert dependent is not None and dependent["metadata"]["deletionTimestamp"]
    await api.merge(dep, {"metadata": {"finalizers": None}})
    assert await api.get(dep) is None and await api.get(owner) is None, "the owner goes with its last blocker"

    owner, dep = await pair("or", block=True, finalizer=False)
    await api.request("DELETE", owner, {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})
    orphan = await api.get(dep)
    assert await api.get(owner) is None and orphan is not None and not orphan["metadata"].get("ownerReferences")


async def test_crd_schema_prunes_defaults_and_validates(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    shop = await api.create(SHOPS, {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop",
                                    "metadata": {"name": "schema"},
                                    "spec": {"bogus": 1, "services": {"gateway": {"replicas": 2, "nope": True}}}})
    assert "bogus" not in shop["spec"] and "nope" not in shop["spec"]["services"]["gateway"], "unknown fields pruned"
    assert shop["spec"]["services"]["gateway"]["replicas"] == 2
    assert shop["spec"]["mongodb"]["storage"]["size"] == "2Gi", "defaults applied"
    for bad, words in (({"services": {"gateway": {"replicas": "two"}}}, "replicas"),
                       ({"mongodb": {"managed": False}}, "external.secretName is required"),
                       ({"services": {"orders": {"autoscaling": {"enabled": True, "minReplicas": 5,
                                                                 "maxReplicas": 2}}}}, "minReplicas")):
        with pytest.raises(ApiFailure) as invalid:
            await api.create(SHOPS, {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop",
                                     "metadata": {"name": "bad"}, "spec": bad})
        assert invalid.value.status == 422 and words in invalid.value.body["message"], invalid.value.body
    with pytest.raises(ApiFailure) as transition:
        await api.merge(f"{SHOPS}/schema", {"spec": {"mongodb": {"storage": {"size": "5Gi"}}}})
    assert transition.value.status == 422 and "storage" in transition.value.body["message"]
    assert "cannot change" in transition.value.body["message"], transition.value.body


async def test_statefulset_immutable_fields(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                         {"name": "db", "image": "x"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    await api.create(f"{APPS}/statefulsets", body)
    scaled = await api.merge(f"{APPS}/statefulsets/db", {"spec": {"replicas": 3}})
    assert scaled["spec"]["replicas"] == 3
    grown = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}]}}
    with pytest.raises(ApiFailure) as forbidden:
        await api.merge(f"{APPS}/statefulsets/db", grown)
    assert forbidden.value.status == 422 and "Forbidden" in forbidden.value.body["message"]
    assert "volumeClaimTemplates" in forbidden.value.body["message"]


async def test_rbac_for_service_accounts(emu: tuple[ClusterEmulator, Api]) -> None:
    cluster, api = emu
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    await api.create(f"{rbac}/namespaces/{NS}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "robot"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]},
                  {"apiGroups": ["microshop.dev"], "resources": ["shops"], "verbs": ["get"]}]})
    await api.create(f"{rbac}/namespaces/{NS}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "robot"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "robot"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}]})
    shop = await api.create(SHOPS, {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop",
                                    "metadata": {"name": "owner"}, "spec": {}})
    await api.create(f"{CORE}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    token = f"{SA}#replica-a"
    assert (await as_user(api, token, "GET", f"{CORE}/configmaps/cm"))["metadata"]["name"] == "cm"
    for method, path in (("GET", f"{CORE}/configmaps"), ("DELETE", f"{CORE}/configmaps/cm"),
                         ("GET", "/api/v1/namespaces/elsewhere/configmaps/cm")):
        with pytest.raises(ApiFailure) as denied:
            await as_user(api, token, method, path)
        assert denied.value.status == 403 and SA in denied.value.body["message"], denied.value.body
    ref = {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop", "name": "owner", "uid": shop["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    with pytest.raises(ApiFailure) as owner_refs:  # needs delete on the object and update on shops/finalizers
        await as_user(api, token, "PATCH", f"{CORE}/configmaps/cm", {"metadata": {"ownerReferences": [ref]}},
                      "application/merge-patch+json")
    assert owner_refs.value.status == 403 and "delete" in owner_refs.value.body["message"]
    with pytest.raises(ApiFailure) as apply_create:
        await apply(api, f"{CORE}/configmaps/new", {"apiVersion": "v1", "kind": "ConfigMap",
                                                    "metadata": {"name": "new"}}, "robot", token=token)
    assert apply_create.value.status == 403 and "create" in apply_create.value.body["message"]
    seen = {(c.verb, c.resource, c.namespace, c.allowed) for c in cluster.calls if c.tag == "replica-a"}
    assert ("get", "configmaps", NS, True) in seen and ("list", "configmaps", NS, False) in seen
    assert ("delete", "configmaps", NS, False) in seen and ("create", "configmaps", NS, False) in seen
    await api.create(f"{rbac}/namespaces/{NS}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "owner"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]},
                  {"apiGroups": ["microshop.dev"], "resources": ["shops/finalizers"], "verbs": ["update"]}]})
    await api.create(f"{rbac}/namespaces/{NS}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "owner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "owner"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}]})
    owned = await as_user(api, token, "PATCH", f"{CORE}/configmaps/cm", {"metadata": {"ownerReferences": [ref]}},
                          "application/merge-patch+json")
    assert owned["metadata"]["ownerReferences"] == [ref]
    assert ("update", "shops/finalizers", NS, True) in {
        (c.verb, c.resource, c.namespace, c.allowed) for c in cluster.calls if c.tag == "replica-a"}


async def test_discovery_as_the_dynamic_client_reads_it(emu: tuple[ClusterEmulator, Api], tmp_path: Path) -> None:
    cluster, api = emu
    for path in ("/api/v2", "/apis/nope", "/apis/apps/v9", "/apis/nope/v1", f"{APPS}/deploymentz"):
        with pytest.raises(ApiFailure) as unknown:
            await api.request("GET", path)
        assert unknown.value.status == 404 and unknown.value.body["reason"] == "NotFound", (path, unknown.value.body)
    autoscaling = await api.request("GET", "/apis/autoscaling")
    assert autoscaling["preferredVersion"]["version"] == "v2", autoscaling  # GA, highest first, as kube orders

    def discover() -> tuple[Any, Any, Any]:
        from kubernetes import client
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        configuration = client.Configuration()
        configuration.host = str(cluster.url).rstrip("/")
        with client.ApiClient(configuration) as api_client:
            dynamic = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
            shops = dynamic.resources.get(api_version="microshop.dev/v1alpha1", kind="Shop")
            secrets = dynamic.resources.get(prefix="api", api_version="v1", kind="Secret")
            with pytest.raises(ResourceNotFoundError):
                dynamic.resources.get(api_version="microshop.dev/v1alpha1", kind="Nope")
            return shops, secrets, dynamic.version

    shops, secrets, version = await asyncio.to_thread(discover)
    assert (shops.name, shops.namespaced, sorted(shops.subresources)) == ("shops", True, ["status"])
    assert (secrets.name, secrets.namespaced) == ("secrets", True)
    assert version["kubernetes"]["gitVersion"].startswith("v1.")


async def test_custom_resources_are_served_as_their_stored_crd_says(emu: tuple[ClusterEmulator, Api]) -> None:
    _, api = emu
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/shops.microshop.dev"
    crd = await api.get(path)
    assert crd is not None and crd["metadata"]["managedFields"][0]["manager"] == "helm", "installed as helm does"
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["newField"] = {"type": "integer", "default": 7}
    await apply(api, path, {"apiVersion": crd["apiVersion"], "kind": crd["kind"],
                            "metadata": {"name": crd["metadata"]["name"]}, "spec": crd["spec"]},
                "upgrader", force=True)
    shop = await api.create(SHOPS, {"apiVersion": "microshop.dev/v1alpha1", "kind": "Shop",
                                    "metadata": {"name": "newer"}, "spec": {}})
    assert shop["spec"]["newField"] == 7, "the applied CRD's schema (its default) is what the server uses now"


async def test_cel_rules_beyond_the_shop_crds_are_enforced(emu: tuple[ClusterEmulator, Api]) -> None:
    """A CRD of the test's own with macros, string functions and a transition rule on a list."""
    _, api = emu
    tags = {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [
        {"rule": "self.all(t, t.startsWith('x-'))", "message": "every tag starts with x-"},
        {"rule": "size(self) >= size(oldSelf)", "message": "tags cannot be removed"}]}
    spec = {"type": "object", "properties": {"tags": tags, "owner": {"type": "string"}},
            "x-kubernetes-validations": [
                {"rule": "!has(self.owner) || self.owner.matches('^[a-z]+@example[.]org$')",
                 "message": "owner is an example.org address"},
                {"rule": "!has(self.tags) || self.tags.exists(t, t == 'x-owned') || !has(self.owner)",
                 "message": "an owned widget is tagged x-owned"}]}
    await api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.microshop.dev"},
        "spec": {"group": "test.microshop.dev", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": spec}}}}]}})
    widgets = f"/apis/test.microshop.dev/v1/namespaces/{NS}/widgets"

    def widget(name: str, **fields: Any) -> dict[str, Any]:
        return {"apiVersion": "test.microshop.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": fields}

    created = await api.create(widgets, widget("ok", tags=["x-owned", "x-b"], owner="ann@example.org"))
    assert created["spec"]["tags"] == ["x-owned", "x-b"]
    for bad, message in ((widget("tag", tags=["x-a", "b"]), "every tag starts with x-"),
                         (widget("mail", tags=["x-owned"], owner="Ann@example.org"), "example.org address"),
                         (widget("untagged", tags=["x-a"], owner="ann@example.org"), "tagged x-owned")):
        with pytest.raises(ApiFailure) as invalid:
            await api.create(widgets, bad)
        assert invalid.value.status == 422 and message in invalid.value.body["message"], invalid.value.body
    grown = await api.merge(f"{widgets}/ok", {"spec": {"tags": ["x-owned", "x-b", "x-c"]}})
    assert grown["spec"]["tags"][-1] == "x-c", "the transition rule holds: a tag added"
    with pytest.raises(ApiFailure) as shrunk:
        await api.merge(f"{widgets}/ok", {"spec": {"tags": ["x-owned"]}})
    assert shrunk.value.status == 422 and "tags cannot be removed" in shrunk.value.body["message"]
