"""The six services from the shop image, run exactly as the chart runs them.

Each Deployment of charts/microshop (default values) becomes one container: its args, its env
(connection URLs and secrets rewritten for this host: the test SecantusDB, the host's RabbitMQ and
Redis, loopback URLs of the other containers), its security context (uid 10001, read-only root
filesystem with a tmpfs /tmp, every capability dropped, no privilege escalation). The containers share
the host's network and bind 127.0.0.1: no traffic goes to any bridge address.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.containers import JWT_KEY_PATH, RUN_AS, SECURITY_FLAGS, ContainerShop
from devtools.procs import Proc, free_port
from devtools.secantus import mongo_url as secantus_url
from devtools.secantus import port_of, secantus_proc, wait_secantus
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, SERVICES
from tests.images.conftest import SHOP_CHART, BuiltImages, run_helm
from tests.support.api import api_client
from tests.support.saga import create_product, login, new_customer, place_order, wait_for_status
from tests.support.services import CHART_ORDER

pytestmark = pytest.mark.timeout(1800)

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(scope="module")
def chart_pods(helm: Path) -> dict[str, dict[str, Any]]:
    """service → its rendered pod spec (charts/microshop, default values)."""
    out = run_helm(helm, "template", "shop", str(SHOP_CHART))
    assert out.returncode == 0, out.stderr
    pods = {}
    for doc in yaml.safe_load_all(out.stdout):
        if doc and doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            pods[pod["containers"][0]["args"][0]] = pod
    assert set(pods) == {s.name for s in SERVICES}
    return pods


def chart_env_for_this_host(pod: dict[str, Any], shop: ContainerShop, mongo: str) -> dict[str, str]:
    """The container's env as the chart sets it, with only what points at the cluster rewritten."""
    env: dict[str, str] = {}
    for entry in pod["containers"][0]["env"]:
        name = entry["name"]
        if not name.startswith("MICROSHOP_"):
            continue  # the password helper variables that the cluster URLs interpolate
        value = entry.get("value")
        if name == "MICROSHOP_MONGO_URL":
            value = mongo
        elif name == "MICROSHOP_REDIS_URL":
            value = REDIS_URL
        elif name == "MICROSHOP_RABBITMQ_URL":
            value = AMQP_URL
        elif name == "MICROSHOP_JWKS_URL":
            value = f"{shop.url('customers')}/auth/jwks"
        elif name.endswith("_URL") and name[len("MICROSHOP_"):-len("_URL")].lower() in shop.ports:
            value = shop.url(name[len("MICROSHOP_"):-len("_URL")].lower())
        elif name == "MICROSHOP_ADMIN_PASSWORD":
            assert "secretKeyRef" in entry["valueFrom"]
            value = DEV_ADMIN_PASSWORD
        assert value is not None, f"{name}: {entry}"
        env[name] = value
    env["MICROSHOP_NAMESPACE"] = shop.namespace  # this session's queues and keys (not a chart setting)
    return env


@pytest.fixture(scope="module")
def chart_shop(images: BuiltImages, docker: str, chart_pods: dict[str, dict[str, Any]], key_file: Path,
               namespace: str) -> Iterator[ContainerShop]:
    db: Proc = secantus_proc().start()  # its own database: the process shop of the session has another
    shop = ContainerShop(key_file=key_file, namespace=f"{namespace}img.", image=images.shop, docker=docker,
                         exact_env=True, out=None, ports={s.name: free_port() for s in SERVICES})
    try:
        wait_secantus(db)
        mongo = secantus_url(port_of(db))
        shop.mongo = mongo
        shop.service_env = {name: chart_env_for_this_host(pod, shop, mongo) for name, pod in chart_pods.items()}
        shop.start(timeout=120)
        yield shop
    finally:
        shop.stop()
        db.stop()


def inspect(docker: str, container: str) -> dict[str, Any]:
    out = subprocess.run([docker, "inspect", container], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)[0]
    return result


def test_the_docker_flags_are_the_charts_security_context(chart_pods: dict[str, dict[str, Any]]) -> None:
    for pod in chart_pods.values():
        ctx, container = pod["securityContext"], pod["containers"][0]
        sec = container["securityContext"]
        assert f"{ctx['runAsUser']}:{ctx['runAsGroup']}" == RUN_AS
        assert sec["readOnlyRootFilesystem"] is True and "--read-only" in SECURITY_FLAGS
        assert sec["capabilities"] == {"drop": ["ALL"]}
        assert SECURITY_FLAGS[SECURITY_FLAGS.index("--cap-drop") + 1] == "ALL"
        assert sec["allowPrivilegeEscalation"] is False and "no-new-privileges" in SECURITY_FLAGS
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp and {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert any(f.startswith("/tmp:") for f in SECURITY_FLAGS)
        keys = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "jwt-key"]
        assert keys in ([], [str(Path(JWT_KEY_PATH).parent)])


def test_containers_run_with_the_charts_args_env_and_security(chart_shop: ContainerShop, docker: str,
                                                             chart_pods: dict[str, dict[str, Any]]) -> None:
    for name, proc in chart_shop.procs.items():
        if name == "mongo":
            continue
        info = inspect(docker, proc.container)  # type: ignore[attr-defined]
        host = info["HostConfig"]
        assert info["Config"]["User"] == "10001:10001"
        assert info["Config"]["Cmd"] == chart_pods[name]["containers"][0]["args"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert "/tmp" in host["Tmpfs"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["NetworkMode"] == "host" and host["Privileged"] is False
        env_names = {e.split("=", 1)[0] for e in info["Config"]["Env"] if e.startswith("MICROSHOP_")}
        chart_env = chart_pods[name]["containers"][0]["env"]
        chart_names = {e["name"] for e in chart_env if e["name"].startswith("MICROSHOP_")}
        assert env_names == chart_names | {"MICROSHOP_NAMESPACE"}, name


def test_services_listen_on_loopback_only(chart_shop: ContainerShop) -> None:
    """Host networking, bound to 127.0.0.1 (read from the kernel's socket table, no packets sent)."""
    listening: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                addr, port = local.rsplit(":", 1)
                listening.setdefault(int(port, 16), addr)
    for name in CHART_ORDER:
        assert listening.get(chart_shop.port(name)) == "0100007F", f"{name} must listen on 127.0.0.1 only"


async def test_health_through_the_gateway(chart_shop: ContainerShop) -> None:
    async with api_client(chart_shop) as api:
        r = await api.get("/health")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok"
        assert set(body["services"].values()) == {"running"} and len(body["services"]) == 5


async def test_register_login_order_confirmed(chart_shop: ContainerShop) -> None:
    async with api_client(chart_shop, timeout=30) as api:
        admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
        product = await create_product(api, admin, stock=5, price=1999)
        buyer = await new_customer(api)  # register, then login
        order = await place_order(api, buyer, [(product["id"], 2)])
        assert order["status"] == "pending"
        done = await wait_for_status(api, buyer, order["id"], timeout=60)
        assert done["status"] == "confirmed", done
        r = await api.get(f"/products/{product['id']}")
        assert r.json()["stock"] == 3


def test_logs_are_json_lines_without_terminal_colours(chart_shop: ContainerShop) -> None:
    for name, proc in chart_shop.procs.items():
        if name == "mongo":
            continue
        assert proc.lines, f"{name} logged nothing"
        for line in proc.lines:
            assert "\x1b" not in line and "\\u001b" not in line, f"{name}: {line}"
            record = json.loads(line)
            assert record["service"] == name and record["level"] and "message" in record, line
            assert "color_message" not in record, line


WRITABLE_PROBE = """
import os, sys
found = []
for top, dirs, files in os.walk('/'):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ('/proc', '/sys', '/dev', '/tmp')]
    for p in [top] + [os.path.join(top, f) for f in files]:
        if not os.path.islink(p) and os.access(p, os.W_OK):
            found.append(p)
try:
    open('/app/probe', 'w')
    found.append('/app/probe (created)')
except OSError as exc:
    print('app:', exc.strerror)
with open('/tmp/probe', 'w') as f:
    f.write('ok')
print('writable:', found[:20])
print('uid:', os.getuid(), os.getgid())
"""


def test_no_writable_paths_but_tmp(chart_shop: ContainerShop, docker: str) -> None:
    for name in ("gateway", "customers"):
        container = chart_shop.procs[name].container  # type: ignore[attr-defined]
        out = subprocess.run([docker, "exec", container, "python", "-c", WRITABLE_PROBE],
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert "writable: []" in out.stdout, out.stdout
        assert "app: Read-only file system" in out.stdout
        assert "uid: 10001 10001" in out.stdout
