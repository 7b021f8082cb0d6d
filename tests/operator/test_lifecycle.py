"""What happens between resyncs and while no operator runs, with the long intervals of a real install.

A release of its own (namespace ``lifecycle``) whose operator resyncs every 10 minutes and backs off
for a minute after a failure: whatever these tests see within seconds is event-driven, not a resync.
"""

from __future__ import annotations

import copy
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from microshop_operator import crd
from tests.operator import scenarios
from tests.operator.api import Api, eventually
from tests.operator.conftest import free_port
from tests.operator.emulator import ClusterEmulator
from tests.operator.install import Release, install, render, start_pod, stop_pod
from tests.operator.scenarios import Env, condition, emulated_orders_unready, emulated_ready, shop_body

pytestmark = pytest.mark.asyncio(loop_scope="session")

RELEASE = "microshop-operator"
NAMESPACE = "lifecycle"
SLOW = {"env": {"MICROSHOP_OPERATOR_RESYNC_SECONDS": "600", "MICROSHOP_OPERATOR_BACKOFF_SECONDS": "60"}}
CRD_NAME = "shops.microshop.dev"
PROMPT = 10.0  # "at once": far below the minute of backoff and the 10 minutes of resync


@dataclass
class Operator:
    release: Release
    server: str
    workdir: Path
    helm: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        self.proc = start_pod(self.release, f"{RELEASE}-{self.starts}", server=self.server,
                              liveness_url=f"http://127.0.0.1:{free_port()}/healthz", workdir=self.workdir,
                              helm=self.helm)

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_pod(self.proc)
            self.proc = None


@pytest_asyncio.fixture(loop_scope="session")
async def slow(api: Api, cluster: ClusterEmulator, helm: Path, tmp_path: Path) -> AsyncIterator[Operator]:
    release = Release(RELEASE, NAMESPACE, render(helm, RELEASE, NAMESPACE, SLOW, tmp_path))
    if await api.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{release.service_account}") is None:
        await install(api, release)
    operator = Operator(release, str(cluster.url).rstrip("/"), tmp_path, helm)
    operator.start()
    try:
        yield operator
    finally:
        await operator.stop()


def env_of(api: Api) -> Env:
    return Env(api=api, namespace=NAMESPACE, timeout=30, make_ready=emulated_ready,
               make_orders_unready=emulated_orders_unready, ready_timeout=30)


async def test_a_reverted_spec_is_applied_at_once(api: Api, slow: Operator) -> None:
    env = env_of(api)
    name = f"shop-{uuid.uuid4().hex[:6]}"
    try:
        await scenarios.create_shop(env, name, {})
        broken = {"services": {"gateway": {"resources": {"requests": {"cpu": "lots"}}}}}
        await api.merge(env.shop(name), {"spec": broken})

        async def degraded() -> bool:
            shop = await api.get(env.shop(name))
            return condition(shop or {}, "Degraded").get("status") == "True"

        await eventually(degraded, timeout=env.timeout, what="Degraded=True after the failing spec")
        reverted = await api.merge(env.shop(name), {"spec": {"services": {"gateway": {"resources": {
            "requests": {"cpu": None}}}}}})
        since = time.monotonic()

        async def recovered() -> bool:
            shop = await api.get(env.shop(name))
            return bool(shop and condition(shop, "Degraded").get("status") == "False"
                        and shop["status"].get("observedGeneration") == reverted["metadata"]["generation"])

        await eventually(recovered, timeout=PROMPT, what="the reverted spec applied without waiting for a retry")
        assert time.monotonic() - since < PROMPT
    finally:
        await env.cleanup()


async def test_deleting_shops_while_no_operator_runs(api: Api, slow: Operator) -> None:
    env = env_of(api)
    plain, volumes = f"shop-{uuid.uuid4().hex[:6]}", f"shop-{uuid.uuid4().hex[:6]}"
    try:
        await scenarios.create_shop(env, plain, {})
        await scenarios.create_shop(env, volumes, {"deletion": {"deletePersistentVolumeClaims": True}})
        claim = await scenarios._claim_of(env, volumes, "mongodb")

        async def finalized() -> bool:
            shop = await api.get(env.shop(volumes))
            return bool(shop and shop["metadata"].get("finalizers"))

        await eventually(finalized, timeout=env.timeout, what="the volume clean-up finalizer")
        plain_shop = await api.get(env.shop(plain))
        assert plain_shop is not None and not plain_shop["metadata"].get("finalizers"), "nothing to clean up"
        await slow.stop()

        await api.delete(env.shop(plain))
        assert await api.get(env.shop(plain)) is None, "gone at once: no finalizer waits for an operator"
        assert not await api.items(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                                   f"{scenarios.SHOP_LABEL}={plain}"), "its children garbage-collected"
        await api.delete(env.shop(volumes))
        waiting = await api.get(env.shop(volumes))
        assert waiting is not None and waiting["metadata"].get("deletionTimestamp"), "waits for its clean-up"

        slow.start()

        async def cleaned() -> bool:
            return await api.get(env.shop(volumes)) is None and \
                await api.get(env.core("persistentvolumeclaims", claim)) is None

        await eventually(cleaned, timeout=env.timeout, what="the volumes deleted once the operator is back")
    finally:
        await env.cleanup()


async def test_shops_of_other_namespaces_are_not_served(api: Api, slow: Operator) -> None:
    """The default install serves its release namespace only (and has no rights elsewhere)."""
    other = "/apis/microshop.dev/v1alpha1/namespaces/elsewhere/shops"
    name = f"shop-{uuid.uuid4().hex[:6]}"
    await api.create(other, shop_body(name, {}))
    mine = env_of(api)
    served = f"shop-{uuid.uuid4().hex[:6]}"
    try:
        await scenarios.create_shop(mine, served, {})
        shop = await api.get(f"{other}/{name}")
        assert shop is not None and not shop.get("status"), "a Shop outside the watched namespaces is left alone"
    finally:
        await api.delete(f"{other}/{name}")
        await mine.cleanup()


async def test_cluster_wide_install_serves_any_namespace(api: Api, cluster: ClusterEmulator, helm: Path,
                                                         tmp_path: Path) -> None:
    """clusterWide: true (the opt-in): Shops anywhere, every call allowed by its ClusterRole."""
    wide = Release(RELEASE, "wide-op", render(helm, RELEASE, "wide-op", {"clusterWide": True, **SLOW}, tmp_path))
    await install(api, wide)
    operator = Operator(wide, str(cluster.url).rstrip("/"), tmp_path, helm)
    operator.start()
    env = Env(api=api, namespace=f"anywhere-{uuid.uuid4().hex[:6]}", timeout=30, make_ready=emulated_ready,
              make_orders_unready=emulated_orders_unready, ready_timeout=30)
    try:
        await scenarios.create_shop(env, f"shop-{uuid.uuid4().hex[:6]}", {})
    finally:
        await env.cleanup()
        await operator.stop()
    calls = [c for c in cluster.calls if c.user == wide.user]
    assert calls and all(c.allowed for c in calls), sorted({(c.verb, c.resource, c.namespace) for c in calls
                                                            if not c.allowed})
    assert {(c.verb, c.resource) for c in calls if c.namespace is None} >= {("list", "shops"), ("watch", "shops")}


async def test_the_operator_upgrades_an_older_shop_crd_at_start(api: Api, cluster: ClusterEmulator, helm: Path,
                                                                 tmp_path: Path) -> None:
    """Helm installs crds/ once and never upgrades them: the operator applies its own CRD when it starts."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
    current = crd.crd_of()
    older = copy.deepcopy(current)  # as an earlier chart had it: no spec.loadGenerator yet
    del older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["loadGenerator"]
    stored = await api.get(path)
    assert stored is not None
    await api.request("PUT", f"{path}?fieldManager=helm", {**older, "metadata": {
        "name": CRD_NAME, "resourceVersion": stored["metadata"]["resourceVersion"]}})
    unserved = "/apis/microshop.dev/v1alpha1/namespaces/crd-check/shops"  # no operator serves it
    pruned = await api.create(unserved, shop_body(f"shop-{uuid.uuid4().hex[:6]}", {"loadGenerator": {}}))
    assert "loadGenerator" not in pruned["spec"], "the older CRD is in force: an unknown field is pruned"
    release = Release(RELEASE, "crd-upgrade", render(helm, RELEASE, "crd-upgrade", SLOW, tmp_path))
    await install(api, release)
    operator = Operator(release, str(cluster.url).rstrip("/"), tmp_path, helm)
    operator.start()
    try:
        async def upgraded() -> bool:
            live = await api.get(path)
            return bool(live and live["spec"] == current["spec"])

        await eventually(upgraded, timeout=60, what="the Shop CRD upgraded by the starting operator")
        live = await api.get(path)
        assert live is not None
        assert {(f["manager"], f["operation"]) for f in live["metadata"]["managedFields"]} >= {
            ("microshop-operator", "Apply")}, live["metadata"]["managedFields"]
        kept = await api.create(unserved, shop_body(f"shop-{uuid.uuid4().hex[:6]}", {"loadGenerator": {}}))
        assert "loadGenerator" in kept["spec"], "the upgraded schema is the one the server uses"
        calls = {(c.verb, c.resource, c.name, c.allowed) for c in cluster.calls if c.user == release.user
                 and c.namespace is None}
        assert ("patch", "customresourcedefinitions", CRD_NAME, True) in calls, calls
    finally:
        await operator.stop()
        for shop in await api.items(unserved):
            await api.delete(f"{unserved}/{shop['metadata']['name']}")
