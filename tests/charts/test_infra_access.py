"""What each service may do on the managed MongoDB and RabbitMQ is what its code needs, and no more.

The chart's users and permissions are compared with what the services themselves state:
``shopkit.mongo.database_user`` (readWrite on its own database) and ``EventBus.permissions`` (the
regexes derived from what its bus declares). tests/integration/test_least_privilege.py runs the
whole shop with exactly those on a real RabbitMQ and an authenticating SecantusDB. The pieces that
run inside the infrastructure pods are executed here: the init container that puts the passwords into
RabbitMQ's definitions (with sh and sed), and mongod's ensure-users.js (with node, in a stand-in of the
mongosh shell API it uses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.shop import SERVICES
from shopctl.apps import CONSUMERS, service_bus
from shopkit.mongo import database_user
from tests.charts.conftest import SHOP_CHART, Render, by_kind
from tests.charts.test_infra_credentials import pod_spec, resolved_env, secret_data
from tests.charts.test_network_topology import app_infrastructure


def _infra_pod(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return pod_spec(by_kind(objects, "StatefulSet")[f"shop-{kind}"])


def _definitions(objects: list[dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(by_kind(objects, "ConfigMap")["shop-rabbitmq-definitions"]["data"]
                                      ["definitions.json"])
    return data


# ---- RabbitMQ ----

@pytest.mark.parametrize("service", CONSUMERS)
def test_each_broker_user_has_exactly_the_permissions_its_bus_states(render: Render, service: str) -> None:
    granted = {p["user"]: p for p in _definitions(render(SHOP_CHART))["permissions"]}
    wanted = service_bus(service).permissions()
    assert {key: granted[service][key] for key in ("configure", "write", "read")} == {
        "configure": wanted.configure, "write": wanted.write, "read": wanted.read}
    assert granted[service]["vhost"] == "/"


def test_only_the_services_on_the_bus_and_the_admin_are_broker_users(render: Render) -> None:
    definitions = _definitions(render(SHOP_CHART))
    on_bus = {s.name for s in SERVICES if "rabbitmq" in app_infrastructure(s.name)}
    assert {u["name"] for u in definitions["users"]} == on_bus | {"microshop"}
    tags = {u["name"]: u["tags"] for u in definitions["users"]}
    assert tags.pop("microshop") == ["administrator"]
    assert all(t == [] for t in tags.values()), "services are no administrators"
    assert {p["user"] for p in definitions["permissions"]} == on_bus | {"microshop"}


def test_the_definitions_get_the_secrets_passwords_and_rabbitmq_imports_them(render: Render, tmp_path: Path) -> None:
    """Run the init container's script (mounts moved under tmp_path) with the env the kubelet would give it."""
    objects = render(SHOP_CHART)
    secrets = secret_data(objects)
    pod = _infra_pod(objects, "rabbitmq")
    (init,) = pod["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    source, target = tmp_path / "config", tmp_path / "definitions"
    source.mkdir()
    target.mkdir()
    template = by_kind(objects, "ConfigMap")["shop-rabbitmq-definitions"]["data"]
    (source / "definitions.json").write_text(template["definitions.json"])
    argv = [arg.replace(mounts["config"], str(source)).replace(mounts["definitions"], str(target))
            for arg in init["command"]]
    subprocess.run(argv, check=True, timeout=10, env=resolved_env(init, secrets))
    written = target / "definitions.json"
    assert written.stat().st_mode & 0o077 == 0, "only RabbitMQ's user reads the passwords"
    users = {u["name"]: u["password"] for u in json.loads(written.read_text())["users"]}
    assert users.pop("microshop") == secrets[("shop-infra", "rabbitmq-password")]
    assert users == {name: secrets[("shop-infra", f"rabbitmq-password-{name}")] for name in users}
    assert "@@" not in written.read_text()

    # RabbitMQ reads that file: the conf.d snippet names it, where the main container mounts the volume.
    container = pod["containers"][0]
    conf = template["20-microshop.conf"]
    path = next(line.split("=", 1)[1].strip() for line in conf.splitlines()
                if line.startswith("definitions.local.path"))
    assert "definitions.import_backend = local_filesystem" in conf
    main_mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert main_mounts[str(Path(path).parent)]["name"] == "definitions"
    assert main_mounts["/etc/rabbitmq/conf.d/20-microshop.conf"]["subPath"] == "20-microshop.conf"
    annotations = pod_template_annotations(objects, "rabbitmq")
    assert "checksum/definitions" in annotations, "new permissions restart RabbitMQ (it imports at start)"


def pod_template_annotations(objects: list[dict[str, Any]], kind: str) -> dict[str, str]:
    annotations: dict[str, str] = by_kind(objects, "StatefulSet")[f"shop-{kind}"]["spec"]["template"]["metadata"].get(
        "annotations", {})
    return annotations


# ---- MongoDB ----

def _users(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = json.loads(by_kind(objects, "ConfigMap")["shop-mongodb-users"]["data"]["users.json"])
    return users


def test_each_database_user_is_the_one_the_service_states_readwrite_on_its_own_database(render: Render) -> None:
    objects = render(SHOP_CHART)
    users = {u["user"]: u for u in _users(objects)}
    on_db = {s.name for s in SERVICES if "mongodb" in app_infrastructure(s.name)}
    assert set(users) == on_db
    for name, spec in users.items():
        assert {k: v for k, v in spec.items() if k != "passwordEnv"} == database_user(name)
        assert spec["roles"] == [{"role": "readWrite", "db": name}], "its own database, nothing else"


def test_mongod_gets_each_services_password_from_the_secret(render: Render) -> None:
    objects = render(SHOP_CHART)
    env = resolved_env(_infra_pod(objects, "mongodb")["containers"][0], secret_data(objects))
    for spec in _users(objects):
        assert env[spec["passwordEnv"]] == secret_data(objects)[("shop-infra", f"mongodb-password-{spec['user']}")]


FAKE_SHELL = r"""
// A stand-in for the parts of the mongosh shell ensure-users.js uses; the state comes from argv.
const vm = require("vm"), fs = require("fs");
const [script, stateFile] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
const calls = [];
class Quit extends Error { constructor(code) { super("quit"); this.code = code; } }
const context = {
  require, process, JSON,
  print: (...args) => calls.push(["print", args.join(" ")]),
  quit: (code) => { throw new Quit(code === undefined ? 0 : code); },
  rs: {
    status: () => { if (!state.initiated) throw new Error("NotYetInitialized"); return {ok: 1}; },
    initiate: (config) => { calls.push(["initiate", config]); return {ok: 1}; },
  },
  db: {
    hello: () => ({isWritablePrimary: state.primary}),
    getSiblingDB: (name) => ({
      getUser: (user) => (state.existing.includes(name + "." + user) ? {user} : null),
      createUser: (spec) => calls.push(["createUser", name, spec]),
    }),
  },
};
let code = 0;
try { vm.runInNewContext(fs.readFileSync(script, "utf8"), context); }
catch (e) { if (e instanceof Quit) code = e.code; else throw e; }
console.log(JSON.stringify({code, calls}));
"""


@pytest.fixture
def run_users_script(render: Render, tmp_path: Path) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: ensure-users.js (mongosh JavaScript) cannot be run here")
    objects = render(SHOP_CHART)
    data = by_kind(objects, "ConfigMap")["shop-mongodb-users"]["data"]
    mount = "/etc/microshop/mongodb"
    assert f'"{mount}/users.json"' in data["ensure-users.js"]
    (tmp_path / "users.json").write_text(data["users.json"])
    (tmp_path / "ensure-users.js").write_text(data["ensure-users.js"].replace(mount, str(tmp_path)))
    (tmp_path / "shell.js").write_text(FAKE_SHELL)
    env = resolved_env(_infra_pod(objects, "mongodb")["containers"][0], secret_data(objects))

    def run(initiated: bool, primary: bool, existing: list[str], drop_env: str | None = None) -> dict[str, Any]:
        (tmp_path / "state.json").write_text(json.dumps(
            {"initiated": initiated, "primary": primary, "existing": existing}))
        run_env = {k: v for k, v in env.items() if k != drop_env}
        out = subprocess.run([node, str(tmp_path / "shell.js"), str(tmp_path / "ensure-users.js"),
                              str(tmp_path / "state.json")], capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/bin:/bin", **run_env}, check=False)
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout)
        result["env"] = env
        return result

    return run


def test_users_script_initiates_the_replica_set_first_and_is_not_ready_yet(run_users_script: Any) -> None:
    result = run_users_script(initiated=False, primary=False, existing=[])
    assert result["code"] == 1
    (call,) = result["calls"]
    assert call[0] == "initiate"
    assert call[1]["members"] == [{"_id": 0, "host": "shop-mongodb-0.shop-mongodb.shop-ns.svc.cluster.local:27017"}]


def test_users_script_waits_for_the_primary(run_users_script: Any) -> None:
    result = run_users_script(initiated=True, primary=False, existing=[])
    assert result == {**result, "code": 1, "calls": []}


def test_users_script_creates_each_missing_user_with_its_password_and_role(run_users_script: Any) -> None:
    result = run_users_script(initiated=True, primary=True, existing=["orders.orders"])
    assert result["code"] == 0
    created = {call[1]: call[2] for call in result["calls"] if call[0] == "createUser"}
    assert set(created) == {"alerts", "analytics", "customers", "products"}, "orders existed: left alone"
    for name, spec in created.items():
        assert spec == {"user": name, "pwd": result["env"][f"MONGODB_PASSWORD_{name.upper()}"],
                        "roles": [{"role": "readWrite", "db": name}]}


def test_users_script_is_not_ready_without_a_password(run_users_script: Any) -> None:
    result = run_users_script(initiated=True, primary=True, existing=[], drop_env="MONGODB_PASSWORD_CUSTOMERS")
    assert result["code"] == 1
    assert ["print", "no MONGODB_PASSWORD_CUSTOMERS in the environment"] in result["calls"]
