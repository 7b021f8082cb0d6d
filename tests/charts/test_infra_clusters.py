"""``mongodb.replicas: 3`` / ``rabbitmq.replicas: 3``: the infrastructure as clusters (docs/kubernetes.md).

The rendered objects are validated with kubernetes-validate --strict in test_render.py (variant
``clusters``); here: what a cluster needs is there, and the single-node default has none of it. The
MongoDB set-up script (ensure-users.js, mongod's readiness probe) cannot meet a real replica set on this
machine (no mongod; SecantusDB is a single-node stand-in), so it runs under node with the mongosh calls
it makes answered by a scripted replica set: who initiates, when a member is ready, how members are added.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.charts.conftest import SHOP_CHART, Render, by_kind, run_helm
from tests.support.services import BROKER_USERS, DATABASE_USERS

CLUSTERS: dict[str, Any] = {"mongodb": {"replicas": 3}, "rabbitmq": {"replicas": 3}}
MEMBERS = [f"shop-mongodb-{i}.shop-mongodb.shop-ns.svc.cluster.local:27017" for i in range(3)]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_default_is_one_node_each_without_cluster_objects(render: Render) -> None:
    objects = render(SHOP_CHART)
    sets = by_kind(objects, "StatefulSet")
    for kind in ("mongodb", "rabbitmq", "redis"):
        spec = sets[f"shop-{kind}"]["spec"]
        assert spec["replicas"] == 1 and "podManagementPolicy" not in spec
        assert "affinity" not in spec["template"]["spec"]
    assert not {"shop-mongodb", "shop-rabbitmq"} & set(by_kind(objects, "PodDisruptionBudget"))
    assert "shop-rabbitmq-amqp" not in by_kind(objects, "Service")
    assert "rabbitmq-erlang-cookie" not in by_kind(objects, "Secret")["shop-infra"]["data"]


def test_rabbitmq_cluster(render: Render) -> None:
    objects = render(SHOP_CHART, CLUSTERS)
    rabbit = by_kind(objects, "StatefulSet")["shop-rabbitmq"]
    spec = rabbit["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    # Peer discovery v2 (RabbitMQ 4.1+) needs no Kubernetes API access: still no token in the pod.
    assert pod["automountServiceAccountToken"] is False
    env = _env(pod["containers"][0])
    assert env["RABBITMQ_NODENAME"]["value"] == "rabbit@$(MY_POD_NAME).shop-rabbitmq.shop-ns.svc.cluster.local"
    assert env["RABBITMQ_USE_LONGNAME"]["value"] == "true"
    assert "rabbitmq_peer_discovery_k8s" in env["RABBITMQ_ENABLED_PLUGINS"]["value"].split(",")
    conf = by_kind(objects, "ConfigMap")["shop-rabbitmq-definitions"]["data"]["20-microshop.conf"]
    assert "cluster_formation.peer_discovery_backend = k8s" in conf
    # One Erlang cookie for every node, from the infra Secret, written where RabbitMQ reads it.
    assert "rabbitmq-erlang-cookie" in by_kind(objects, "Secret")["shop-infra"]["data"]
    init = pod["initContainers"][0]
    assert _env(init)["RABBITMQ_ERLANG_COOKIE"]["valueFrom"]["secretKeyRef"] == {
        "name": "shop-infra", "key": "rabbitmq-erlang-cookie"}
    assert "/var/lib/rabbitmq/.erlang.cookie" in init["command"][-1]
    assert {"name": "data", "mountPath": "/var/lib/rabbitmq"} in init["volumeMounts"]
    services = by_kind(objects, "Service")
    assert services["shop-rabbitmq"]["spec"]["publishNotReadyAddresses"] is True
    client = services["shop-rabbitmq-amqp"]["spec"]
    assert "clusterIP" not in client and not client.get("publishNotReadyAddresses")
    for name in BROKER_USERS:
        url = _env(by_kind(objects, "Deployment")[f"shop-{name}"]["spec"]["template"]["spec"]["containers"][0])
        assert url["MICROSHOP_RABBITMQ_URL"]["value"] == f"amqp://{name}:$(RABBITMQ_PASSWORD)@shop-rabbitmq-amqp:5672/"


def test_mongodb_replica_set(render: Render) -> None:
    objects = render(SHOP_CHART, CLUSTERS)
    mongo = by_kind(objects, "StatefulSet")["shop-mongodb"]
    assert mongo["spec"]["replicas"] == 3
    # OrderedReady (the default): member 0 initiates alone, each next member is added once it answers.
    assert "podManagementPolicy" not in mongo["spec"]
    data = by_kind(objects, "ConfigMap")["shop-mongodb-users"]["data"]
    assert json.loads(data["members.json"]) == MEMBERS
    for name in DATABASE_USERS:
        env = _env(by_kind(objects, "Deployment")[f"shop-{name}"]["spec"]["template"]["spec"]["containers"][0])
        assert env["MICROSHOP_MONGO_URL"]["value"] == (
            f"mongodb://{name}:$(MONGODB_PASSWORD)@{','.join(MEMBERS)}/{name}"
            f"?replicaSet=rs0&w=majority&authSource={name}")


@pytest.mark.parametrize("kind", ["mongodb", "rabbitmq"])
def test_members_spread_and_are_disrupted_one_at_a_time(render: Render, kind: str) -> None:
    objects = render(SHOP_CHART, CLUSTERS)
    selector = {"app.kubernetes.io/name": "microshop", "app.kubernetes.io/instance": "shop",
                "app.kubernetes.io/component": kind}
    pod = by_kind(objects, "StatefulSet")[f"shop-{kind}"]["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname" and term["labelSelector"]["matchLabels"] == selector
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == selector
    pdb = by_kind(objects, "PodDisruptionBudget")[f"shop-{kind}"]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    # The members reach each other through the default-deny NetworkPolicies.
    rules = by_kind(objects, "NetworkPolicy")[f"shop-{kind}"]["spec"]["ingress"]
    peers = [r for r in rules if r["from"] == [{"podSelector": {"matchLabels": selector}}]]
    ports = {p["port"] for r in peers for p in r["ports"]}
    assert ports == ({"mongodb"} if kind == "mongodb" else {4369, 25672})
    assert "shop-" + kind not in by_kind(render(SHOP_CHART, {**CLUSTERS, "pdb": {"enabled": False}}),
                                         "PodDisruptionBudget")


@pytest.mark.parametrize("replicas", [0, 2, 5])
def test_replicas_is_one_or_three(helm: Path, tmp_path: Path, replicas: int) -> None:
    for kind in ("mongodb", "rabbitmq"):
        out = run_helm(helm, "template", "shop", str(SHOP_CHART), values={kind: {"replicas": replicas}}, tmp=tmp_path)
        assert out.returncode != 0 and "replicas" in out.stderr, out.stderr


# -- ensure-users.js against a scripted replica set ------------------------------------------------------

HARNESS = r"""
// Runs ensure-users.js with the mongosh globals it uses answered from a scenario (argv[2], JSON).
const vm = require("vm");
const [script, scenario] = [require("fs").readFileSync(process.argv[2], "utf8"), JSON.parse(process.argv[3])];
const calls = [];
class Quit { constructor(code) { this.code = code; } }
const files = {"/etc/microshop/mongodb/users.json": JSON.stringify(scenario.users),
               "/etc/microshop/mongodb/members.json": JSON.stringify(scenario.members)};
const sandbox = {
  require: (name) => name === "fs" ? {readFileSync: (p) => files[p]} : {hostname: () => scenario.hostname},
  process: {env: scenario.env},
  print: (text) => calls.push(["print", text]),
  quit: (code) => { throw new Quit(code); },
  rs: {
    status: () => { if (!scenario.config) throw new Error("NotYetInitialized"); return {}; },
    initiate: (cfg) => calls.push(["initiate", cfg]),
    conf: () => scenario.config,
    add: (member) => calls.push(["add", member]),
  },
  db: {
    hello: () => scenario.hello,
    getSiblingDB: (name) => ({
      getUser: (user) => scenario.existingUsers.includes(user) ? {user} : null,
      createUser: (spec) => calls.push(["createUser", spec.user, name]),
    }),
  },
  Mongo: function (host) {
    if (!scenario.answering.includes(host)) throw new Error("connect ECONNREFUSED " + host);
    return {getDB: () => ({runCommand: () => ({ok: 1})})};
  },
};
let code = 0;
try { vm.runInNewContext(script, sandbox); } catch (e) { if (e instanceof Quit) code = e.code; else throw e; }
console.log(JSON.stringify({code, calls}));
"""


@pytest.fixture(scope="module")
def ensure_users(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: ensure-users.js cannot be run here (apt-get install nodejs)")
    tmp = tmp_path_factory.mktemp("ensure-users")
    script = tmp / "ensure-users.js"
    script.write_text(by_kind(render(SHOP_CHART, CLUSTERS), "ConfigMap")["shop-mongodb-users"]["data"]["ensure-users.js"])
    harness = tmp / "harness.js"
    harness.write_text(HARNESS)

    def run(**scenario: Any) -> dict[str, Any]:
        base = {"users": [{"user": "orders", "db": "orders", "roles": [], "passwordEnv": "MONGODB_PASSWORD_ORDERS"}],
                "members": MEMBERS, "env": {"MONGODB_PASSWORD_ORDERS": "secret"}, "existingUsers": [],
                "answering": MEMBERS, "config": None, "hello": {}, "hostname": "shop-mongodb-0"}
        out = subprocess.run([node, str(harness), str(script), json.dumps({**base, **scenario})],
                             capture_output=True, text=True, timeout=30, check=True)
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    return run


def _config(*hosts: str) -> dict[str, Any]:
    return {"_id": "rs0", "members": [{"_id": i, "host": h} for i, h in enumerate(hosts)]}


def test_member_zero_initiates_the_set_alone_and_the_others_wait(ensure_users: Any) -> None:
    first = ensure_users()
    assert first == {"code": 1, "calls": [["initiate", {"_id": "rs0", "members": [{"_id": 0, "host": MEMBERS[0]}]}]]}
    for other in ("shop-mongodb-1", "shop-mongodb-2"):
        assert ensure_users(hostname=other) == {"code": 1, "calls": []}


def test_the_primary_adds_one_answering_member_per_run_then_creates_users(ensure_users: Any) -> None:
    primary = {"isWritablePrimary": True}
    run = ensure_users(config=_config(MEMBERS[0]), hello=primary)
    assert run["code"] == 0
    assert run["calls"][0] == ["add", {"_id": 1, "host": MEMBERS[1]}]
    assert ["createUser", "orders", "orders"] in run["calls"]
    assert not [c for c in run["calls"] if c[0] == "add" and c[1]["host"] == MEMBERS[2]]
    # A member that does not answer yet is not added (a reconfiguration would fail its quorum check).
    waiting = ensure_users(config=_config(*MEMBERS[:2]), hello=primary, answering=MEMBERS[:2], existingUsers=["orders"])
    assert waiting["code"] == 0 and not [c for c in waiting["calls"] if c[0] in ("add", "createUser")]
    complete = ensure_users(config=_config(*MEMBERS), hello=primary, existingUsers=["orders"])
    assert complete == {"code": 0, "calls": []}


def test_a_secondary_is_ready_and_a_member_in_any_other_state_is_not(ensure_users: Any) -> None:
    assert ensure_users(config=_config(*MEMBERS), hello={"secondary": True}, hostname="shop-mongodb-2") == {
        "code": 0, "calls": []}
    assert ensure_users(config=_config(*MEMBERS), hello={}, hostname="shop-mongodb-1")["code"] == 1
