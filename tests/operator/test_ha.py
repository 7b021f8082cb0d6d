"""Two replicas from the chart's default values: one leads and reconciles, the other stands by and takes over.

A release of its own (namespace ``ha``) with nothing but the chart's defaults: two replicas, a Lease
of 15 s renewed every 2 s. The bound a standby must meet after the leader is killed (SIGKILL, so it
cannot release the Lease) is lease duration + 2 x retry period (docs/operator.md) plus start-up.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.operator.api import Api, eventually
from tests.operator.conftest import free_port, probe
from tests.operator.emulator import ClusterEmulator
from tests.operator.install import Release, install, render, start_pod, stop_pod
from tests.operator.scenarios import shop_body

pytestmark = pytest.mark.asyncio(loop_scope="session")

RELEASE = "microshop-operator"
NAMESPACE = "ha"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{RELEASE}"
SHOPS = f"/apis/microshop.dev/v1alpha1/namespaces/{NAMESPACE}/shops"
STARTUP_SLACK = 10.0  # kopf's start after taking the Lease: listing, watching, the first reconcile (loaded CI)


def _lease_timings(release: Release) -> tuple[float, float]:
    env = {e["name"]: e.get("value") for e in
           release.only("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    return (float(env["MICROSHOP_OPERATOR_LEASE_DURATION_SECONDS"]),
            float(env["MICROSHOP_OPERATOR_RETRY_PERIOD_SECONDS"]))


async def _reconciled(api: Api, name: str) -> dict[str, Any] | None:
    shop = await api.get(f"{SHOPS}/{name}")
    if shop and (shop.get("status") or {}).get("observedGeneration") == shop["metadata"]["generation"]:
        return shop
    return None


async def test_two_replicas_one_leads_and_the_other_takes_over(
        api: Api, cluster: ClusterEmulator, helm: Path, tmp_path: Path) -> None:
    ha = Release(RELEASE, NAMESPACE, render(helm, RELEASE, NAMESPACE))  # the chart's defaults, nothing else
    assert ha.replicas == 2
    duration, retry = _lease_timings(ha)
    assert (duration, retry) == (15.0, 2.0), "the defaults documented in values.yaml and docs/operator.md"
    await install(api, ha)
    server = str(cluster.url).rstrip("/")
    pods = {f"{RELEASE}-{tag}": f"http://127.0.0.1:{free_port()}/healthz" for tag in ("a", "b")}
    procs = {pod: start_pod(ha, pod, server=server, liveness_url=url, workdir=tmp_path, helm=helm)
             for pod, url in pods.items()}
    try:
        async def holder() -> str | None:
            lease = await api.get(LEASE)
            return str((lease or {}).get("spec", {}).get("holderIdentity") or "") or None

        leader = await eventually(holder, timeout=30, what="one replica to take the Lease")
        standby = next(pod for pod in pods if pod != leader)
        first = f"shop-{uuid.uuid4().hex[:6]}"
        await api.create(SHOPS, shop_body(first, {}))
        await eventually(lambda: _reconciled(api, first), timeout=30, what=f"{first} reconciled by the leader")
        assert await eventually(lambda: probe(pods[standby]), timeout=15, what="the standby's liveness endpoint"), \
            "a standby answers liveness probes (else the kubelet would restart it)"

        def calls_of(pod: str) -> set[tuple[str, str]]:
            return {(c.verb, c.resource) for c in cluster.calls if c.user == ha.user and c.tag == pod}

        assert ("patch", "deployments") in calls_of(leader), "the leader applies"
        assert calls_of(standby) <= {("get", "leases"), ("update", "leases"), ("create", "leases")}, \
            f"the standby only watches the Lease: {calls_of(standby)}"
        assert await holder() == leader, "the lease did not move while both ran"

        procs[leader].kill()  # no graceful release: the standby must wait for the lease to expire
        killed = time.monotonic()
        second = f"shop-{uuid.uuid4().hex[:6]}"
        await api.create(SHOPS, shop_body(second, {}))
        bound = duration + 2 * retry + STARTUP_SLACK
        await eventually(lambda: _reconciled(api, second), timeout=bound + 5,
                         what=f"{second} reconciled after the leader died")
        took = time.monotonic() - killed
        print(f"\nfail-over: the standby reconciled {took:.1f}s after the leader was killed "
              f"(bound {bound:.0f}s = lease {duration:.0f}s + 2 x retry {retry:.0f}s + start-up {STARTUP_SLACK:.0f}s)")
        assert took <= bound, f"fail-over took {took:.1f}s, more than {bound:.0f}s"
        assert await holder() == standby
        lease = await api.get(LEASE)
        assert lease is not None and lease["spec"]["leaseTransitions"] >= 1
        assert ("patch", "deployments") in calls_of(standby), "the new leader applies"
    finally:
        for proc in procs.values():
            await stop_pod(proc)
        for name in (await api.request("GET", SHOPS)).get("items") or []:
            await api.delete(f"{SHOPS}/{name['metadata']['name']}")
        for pod in pods:
            log = tmp_path / f"{pod}.log"
            if log.exists():
                print(f"--- {pod}\n" + "\n".join(line for line in log.read_text().splitlines()
                                                 if "lease" in line.lower())[-3000:])
