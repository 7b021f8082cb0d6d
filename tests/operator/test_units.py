"""Fast checks of the operator's pure parts: CRD generation, values mapping, status and conditions."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from microshop_operator import crd, secrets, status, values
from microshop_operator.__main__ import kopf_args
from tests.operator.emulator import CRD_PATH

SECRETS_TEMPLATE = CRD_PATH.parents[2] / "microshop" / "templates" / "secrets.yaml"


def test_committed_crd_is_generated_from_the_chart() -> None:
    assert CRD_PATH.read_text() == crd.render_crd(), (
        "the Shop CRD is out of date with charts/microshop: run "
        "`python -m microshop_operator.crd > charts/microshop-operator/crds/shops.microshop.dev.yaml`")


def test_values_pass_the_spec_through_and_pin_the_secrets() -> None:
    spec = {"services": {"gateway": {"replicas": 3}}, "deletion": {"deletePersistentVolumeClaims": True},
            "auth": {"adminSecret": {"email": "boss@example.com"}}}
    result = values.spec_to_values("demo", spec)
    assert result["services"] == {"gateway": {"replicas": 3}}
    assert "deletion" not in result
    assert result["auth"]["jwtKeySecret"] == {"name": "demo-jwt", "create": False}
    assert result["auth"]["adminSecret"] == {"email": "boss@example.com", "name": "demo-admin", "create": False}
    assert result["infraSecret"] == {"name": "demo-infra", "create": False}
    named = values.spec_to_values("demo", {"infraSecret": {"name": "creds", "create": True}})
    assert named["infraSecret"] == {"name": "creds", "create": False}
    assert values.secret_names("demo", {"infraSecret": {"name": "creds"}}).infra == "creds"


def test_infra_secret_body_has_every_key_the_chart_references(helm: Path) -> None:
    body = secrets.infra_secret_body("demo-infra", "ns", {"a": "b"})
    data = {key: base64.b64decode(value).decode() for key, value in body["data"].items()}
    out = subprocess.run([str(helm), "template", "demo", str(SECRETS_TEMPLATE.parents[1]), "--show-only",
                          "templates/secrets.yaml"], capture_output=True, text=True, timeout=60, check=True)
    chart = next(doc for doc in yaml.safe_load_all(out.stdout) if doc and doc["metadata"]["name"] == "demo-infra")
    assert set(data) == set(chart["data"])
    assert {"mongodb-password", "mongodb-keyfile", "redis-password", "rabbitmq-password",
            "mongodb-password-orders", "rabbitmq-password-orders"} <= set(data)
    assert "rabbitmq-password-customers" not in data, "customers does not use RabbitMQ"
    for key, value in data.items():
        assert value.isascii() and value.isalnum(), f"{key}: URL-safe and in mongod's keyfile alphabet"
    assert len(data["mongodb-keyfile"]) == 756
    assert min(len(v) for k, v in data.items() if k.endswith("password")) >= 24
    again = secrets.infra_secret_body("demo-infra", "ns", {})["data"]
    assert not set(again.values()) & set(body["data"].values()), "generated anew each time"
    assert "ownerReferences" not in body["metadata"], "lives as long as the volumes, not the Shop"
    assert body["metadata"]["labels"] == {"a": "b"}
    assert secrets.infra_keys(["redis", "mongodb"])[:3] == ("redis-password", "mongodb-password", "mongodb-keyfile")
    assert set(secrets.infra_keys(["redis", "mongodb"])) == {k for k in data if not k.startswith("rabbitmq")}


@pytest.mark.parametrize(("spec", "field"), [
    ({"services": {"orders": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}}}, "orders"),
    ({"mongodb": {"managed": False}}, "mongodb"),
    ({"ingress": {"enabled": True, "tls": {"enabled": True}}}, "tls"),
    ({"services": {"gateway": {"enabled": False}}}, "gateway"),
])
def test_cross_field_rules(spec: dict[str, object], field: str) -> None:
    with pytest.raises(values.InvalidSpec, match=field):
        values.validate(spec)


def workload(name: str, ready: int, desired: int, generation: int = 1, observed: int = 1
             ) -> tuple[str, dict[str, object]]:
    """As a real list returns it: no ``kind`` on the item; the kind comes from what was listed."""
    return "Deployment", {"metadata": {"name": f"x-{name}", "generation": generation,
                                               "labels": {"app.kubernetes.io/component": name}},
            "spec": {"replicas": desired},
            "status": {"readyReplicas": ready, "observedGeneration": observed, "updatedReplicas": desired}}


def test_last_transition_time_moves_only_on_flips() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    comps = status.components_of([workload("gateway", 0, 1), workload("mongodb", 1, 1)])
    first = status.build_status(None, generation=1, observed_generation=1, components=comps, failure=None,
                                paused=False, url=None, now=t0)
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and "gateway 0/1" in ready["message"]
    assert first["phase"] == "Progressing"
    again = status.build_status(first, generation=1, observed_generation=1, components=comps, failure=None,
                                paused=False, url=None, now=t0 + timedelta(minutes=5))
    assert status.status_patch(first, again) is None  # nothing changed: no write
    comps_ready = status.components_of([workload("gateway", 1, 1), workload("mongodb", 1, 1)])
    later = status.build_status(first, generation=1, observed_generation=1, components=comps_ready, failure=None,
                                paused=False, url=None, now=t0 + timedelta(minutes=9))
    by_type = {c["type"]: c for c in later["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-01T00:09:00Z"
    assert by_type["Degraded"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert later["phase"] == "Ready"
    assert ("Normal", "AllComponentsReady") in {(t, r) for t, r, _, _ in status.transitions(
        first["conditions"], later["conditions"])}


def test_a_failure_degrades_and_keeps_observed_generation() -> None:
    old = {"observedGeneration": 4}
    new = status.build_status(old, generation=5, observed_generation=None, components=[],
                              failure=status.Failure("RenderFailed", "bad cpu"), paused=False, url=None)
    assert new["phase"] == "Degraded" and new["observedGeneration"] == 4
    degraded = next(c for c in new["conditions"] if c["type"] == "Degraded")
    assert degraded == {**degraded, "status": "True", "reason": "RenderFailed", "message": "bad cpu"}


def test_rollout_pending_is_not_ready() -> None:
    comp = status.component_of(workload("orders", 1, 1, generation=3, observed=2)[1], "Deployment")
    assert not comp.is_ready and "rollout pending" in comp.describe()


def test_cli_defaults_and_pass_through() -> None:
    assert kopf_args([], {}) == ["run", "-m", "microshop_operator.handlers", "--log-format=json",
                                 "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
    args = kopf_args(["--namespace=shop", "--peering=p", "--log-format=plain"], {"MICROSHOP_OPERATOR_LIVENESS": ""})
    assert args == ["run", "-m", "microshop_operator.handlers", "--namespace=shop", "--peering=p",
                    "--log-format=plain"]


def test_components_name_the_kind_they_were_listed_as() -> None:
    comps = status.components_of([workload("gateway", 1, 1), ("StatefulSet", workload("mongodb", 1, 1)[1])])
    assert [(c.name, c.kind) for c in comps] == [("gateway", "Deployment"), ("mongodb", "StatefulSet")]
    built = status.build_status(None, generation=1, observed_generation=1, components=comps, failure=None,
                                paused=False, url=None)
    assert built["components"]["mongodb"] == {"kind": "StatefulSet", "ready": 1, "desired": 1}


def test_a_paused_shop_does_not_claim_the_new_generation() -> None:
    comps = status.components_of([workload("gateway", 1, 1), workload("mongodb", 1, 1)])
    applied = status.build_status(None, generation=3, observed_generation=3, components=comps, failure=None,
                                  paused=False, url=None)
    paused = status.build_status(applied, generation=4, observed_generation=None, components=comps,
                                 failure=None, paused=True, url=None)
    by_type = {c["type"]: c for c in paused["conditions"]}
    assert paused["observedGeneration"] == 3 and paused["phase"] == "Paused"
    assert by_type["Paused"]["status"] == "True" and by_type["Paused"]["observedGeneration"] == 4
    assert by_type["Ready"]["observedGeneration"] == 3, "Ready speaks of the last applied generation"
    assert by_type["Progressing"]["reason"] == "Paused"
    resumed = status.build_status(paused, generation=5, observed_generation=5, components=comps, failure=None,
                                  paused=False, url=None)
    assert {c["type"]: c for c in resumed["conditions"]}["Paused"]["status"] == "False"
    assert {c["type"]: c["observedGeneration"] for c in resumed["conditions"]} == {
        t: 5 for t in status.CONDITION_TYPES}


def test_liveness_endpoint_of_the_command_line() -> None:
    from microshop_operator.__main__ import liveness_of

    assert liveness_of(kopf_args([], {})) == "http://0.0.0.0:8080/healthz"
    assert liveness_of(kopf_args(["-L", "http://127.0.0.1:9/h"], {"MICROSHOP_OPERATOR_LIVENESS": ""})) == \
        "http://127.0.0.1:9/h"
    assert liveness_of(kopf_args([], {"MICROSHOP_OPERATOR_LIVENESS": ""})) is None


def test_event_handlers_success_lines_are_debug() -> None:
    import logging

    from microshop_operator.workers import QuietHandlers

    quiet = QuietHandlers()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        child = record("Handler 'child_event' succeeded.")
        assert quiet.filter(child) is False and child.levelno == logging.DEBUG
        assert quiet.filter(record("Handler 'shop_event' succeeded.")) is False
        assert quiet.filter(record("Handler 'delete_volumes' succeeded.")) is True, "the rare ones stay"
        root.setLevel(logging.DEBUG)
        assert quiet.filter(record("Handler 'child_event' succeeded.")) is True, "shown with --debug"
    finally:
        root.setLevel(level)


class _FakeLeases:
    """The three Lease calls of LeaderElector against an in-memory store with resourceVersions."""

    def __init__(self) -> None:
        self.lease: dict[str, object] | None = None
        self.version = 0
        self.broken = False

    async def get(self, kind: object, namespace: str, name: str) -> dict[str, object] | None:
        if self.broken:
            from microshop_operator.kube import KubeError
            raise KubeError(0, "Unreachable", "the API server is gone")
        return None if self.lease is None else {**self.lease, "metadata": {"resourceVersion": str(self.version)}}

    async def create(self, kind: object, namespace: str, body: dict[str, object]) -> dict[str, object]:
        from microshop_operator.kube import KubeError
        if self.lease is not None:
            raise KubeError(409, "AlreadyExists", "exists")
        self.lease, self.version = body, self.version + 1
        return body

    async def replace(self, kind: object, namespace: str, body: dict[str, object]) -> dict[str, object]:
        from microshop_operator.kube import KubeError
        if str(body["metadata"]["resourceVersion"]) != str(self.version):  # type: ignore[index]
            raise KubeError(409, "Conflict", "modified")
        self.lease, self.version = body, self.version + 1
        return body


def test_leader_election_takes_over_only_after_the_lease_expires() -> None:
    import asyncio
    import logging
    import time

    from microshop_operator.config import LeaseConfig
    from microshop_operator.leader import LeaderElector

    async def scenario() -> None:
        store = _FakeLeases()
        log = logging.getLogger("test")

        def elector(identity: str) -> LeaderElector:
            lease = LeaseConfig(name="op", namespace="ns", identity=identity, duration=1.0, renew_deadline=0.6,
                                retry_period=0.1)
            return LeaderElector(store, lease, log)  # type: ignore[arg-type]

        a, b = elector("a"), elector("b")
        await asyncio.wait_for(a.acquire(), timeout=5)
        assert a.leading and store.lease["spec"]["holderIdentity"] == "a"  # type: ignore[index]
        lost: list[float] = []
        holding = asyncio.create_task(a.hold(lambda: lost.append(time.monotonic())))
        assert not await b._try(), "a renews: b must not take it"
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(1.5)  # several lease durations: a keeps renewing
        assert not waiting.done() and store.lease["spec"]["holderIdentity"] == "a"  # type: ignore[index]
        holding.cancel()  # a dies without releasing
        died = time.monotonic()
        await asyncio.wait_for(waiting, timeout=5)
        took = time.monotonic() - died
        assert b.leading and store.lease["spec"]["holderIdentity"] == "b"  # type: ignore[index]
        assert 0.9 <= took <= 1.0 + 2 * 0.1 + 0.3, took  # the lease duration, within 2 retries
        assert store.lease["spec"]["leaseTransitions"] == 1  # type: ignore[index]
        # b cannot renew any more: it stops leading after the renew deadline, before the lease could expire.
        store.broken = True
        since = time.monotonic()
        await asyncio.wait_for(b.hold(lambda: lost.append(time.monotonic())), timeout=5)
        assert lost and 0.6 <= lost[-1] - since < 1.0 and not b.leading
        store.broken = False
        await b.release()  # not leading any more: nothing to release
        assert store.lease["spec"]["holderIdentity"] == "b"  # type: ignore[index]

    asyncio.run(scenario())


def test_a_graceful_stop_releases_the_lease() -> None:
    import asyncio
    import dataclasses
    import logging

    from microshop_operator.config import LeaseConfig
    from microshop_operator.leader import LeaderElector

    async def scenario() -> None:
        store = _FakeLeases()
        lease = LeaseConfig(name="op", namespace="ns", identity="a", duration=30.0, renew_deadline=20.0,
                            retry_period=0.1)
        a = LeaderElector(store, lease, logging.getLogger("test"))  # type: ignore[arg-type]
        await a.acquire()
        await a.release()
        assert store.lease["spec"]["holderIdentity"] is None  # type: ignore[index]
        b = LeaderElector(store, dataclasses.replace(lease, identity="b"), logging.getLogger("test"))  # type: ignore[arg-type]
        assert await b._try(), "a released lease is taken at once, not after 30 s"

    asyncio.run(scenario())


def test_infrastructure_status_and_cluster_keys() -> None:
    components = [status.Component("rabbitmq", "StatefulSet", 2, 3, True),
                  status.Component("mongodb", "StatefulSet", 1, 3, True),
                  status.Component("redis", "StatefulSet", 1, 1, True),
                  status.Component("orders", "Deployment", 1, 1, True)]
    infra = status.infrastructure_of(components)
    assert infra == {"rabbitmq": {"replicas": 3, "readyReplicas": 2, "quorum": True},
                     "mongodb": {"replicas": 3, "readyReplicas": 1, "quorum": False},
                     "redis": {"replicas": 1, "readyReplicas": 1, "quorum": True}}
    # A component no longer managed leaves status.infrastructure (null in the merge patch).
    patch = status.status_patch({"infrastructure": infra}, {"infrastructure": {"redis": infra["redis"]}})
    assert patch == {"infrastructure": {"redis": infra["redis"], "rabbitmq": None, "mongodb": None}}
    spec = {"rabbitmq": {"replicas": 3}, "mongodb": {"replicas": 1}, "redis": {"managed": True}}
    assert values.clustered_infrastructure(spec) == ["rabbitmq"]
    assert values.clustered_infrastructure({"rabbitmq": {"replicas": 3, "managed": False}}) == []
    assert "rabbitmq-erlang-cookie" in secrets.infra_keys(["rabbitmq"], ["rabbitmq"])
    assert "rabbitmq-erlang-cookie" not in secrets.infra_keys(["rabbitmq"])
    body = secrets.infra_secret_body("s", "ns", {}, ["rabbitmq"])
    assert len(base64.b64decode(body["data"]["rabbitmq-erlang-cookie"])) == 32
    assert "rabbitmq-erlang-cookie" not in secrets.infra_secret_body("s", "ns", {})["data"]
