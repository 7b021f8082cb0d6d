"""compose.yaml: valid (compose's own `config` and the compose-spec schema), the chart's settings and security,
and its six app services running from the built image against this host's infrastructure (compose.host.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from devtools.procs import Proc, free_port, wait_until
from devtools.secantus import mongo_url as secantus_url
from devtools.secantus import port_of, secantus_proc, wait_secantus
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, SERVICES
from tests.images.conftest import ROOT, SHOP_CHART, BuiltImages, run_helm
from tests.support.saga import create_product, login, new_customer, place_order, wait_for_status

pytestmark = pytest.mark.timeout(1800)

COMPOSE = ROOT / "compose.yaml"
OVERRIDE = ROOT / "compose.override.yaml"
HOST = ROOT / "compose.host.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
APP = [s.name for s in SERVICES]
INFRA = ("mongodb", "rabbitmq", "redis")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())  # resolves the files' YAML anchors and merge keys
    return data


def compose_cli() -> list[str] | None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) and subprocess.run([*argv, "version"], capture_output=True, timeout=60,
                                                     check=False).returncode == 0:
            return argv
    return None


@pytest.fixture(scope="module")
def cli() -> list[str]:
    argv = compose_cli()
    if argv is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed "
                    "(Debian: apt-get install docker-compose)")
    return argv


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, OVERRIDE), (COMPOSE, HOST)], ids=["base", "default", "host"])
def test_compose_cli_accepts_the_files(cli: list[str], files: tuple[Path, ...]) -> None:
    argv = [*cli, *[a for f in files for a in ("-f", str(f))], "config"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
                         env={**os.environ, "MICROSHOP_IMAGE": "microshop:0.1.0"})
    assert out.returncode == 0, out.stderr
    merged = yaml.safe_load(out.stdout)
    assert set(APP) | set(INFRA) == set(merged["services"])
    if HOST in files:
        assert all(merged["services"][s]["network_mode"] == "host" for s in APP)
        assert "ports" not in merged["services"]["gateway"]
        assert not merged.get("networks"), "the host variant needs no container network"


@pytest.mark.parametrize("path", [COMPOSE, OVERRIDE, HOST], ids=lambda p: p.name)
def test_files_validate_against_the_compose_spec_schema(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(load(path))


def chart_env_names() -> dict[str, set[str]]:
    from devtools.helm import ensure_helm

    out = run_helm(ensure_helm(), "template", "shop", str(SHOP_CHART))
    assert out.returncode == 0, out.stderr
    names = {}
    for doc in yaml.safe_load_all(out.stdout):
        if doc and doc["kind"] == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            names[container["args"][0]] = {e["name"] for e in container["env"] if e["name"].startswith("MICROSHOP_")}
    return names


def test_app_services_are_the_chart_services() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    chart = chart_env_names()
    for name in APP:
        svc = services[name]
        assert svc["image"] == "${MICROSHOP_IMAGE:-microshop:0.1.0}"
        assert svc["command"] == [name]
        assert svc["user"] == "10001:10001" and svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])
        assert "/health/ready" in " ".join(svc["healthcheck"]["test"])
        # The chart's MICROSHOP_* names; the signing key is the PEM itself here instead of a mounted file.
        expected = set(chart[name])
        if name == "customers":
            expected = expected - {"MICROSHOP_JWT_PRIVATE_KEY_FILE"} | {"MICROSHOP_JWT_PRIVATE_KEY"}
        assert set(svc["environment"]) == expected, name
        assert svc["environment"]["MICROSHOP_LOG_FORMAT"] == "json"
        assert "ports" not in svc, "only compose.override.yaml publishes a port (the gateway's)"
    assert load(OVERRIDE)["services"] == {"gateway": {"ports": ["127.0.0.1:${GATEWAY_PORT:-8000}:8000"]}}


def test_infrastructure_official_images_health_and_start_order() -> None:
    services = load(COMPOSE)["services"]
    values = yaml.safe_load((SHOP_CHART / "values.yaml").read_text())
    for name in INFRA:
        assert services[name]["image"] == values[name]["image"], "the chart's pinned versions"
        assert services[name]["healthcheck"]["test"]
    assert services["mongodb"]["command"][:2] == ["--replSet", "rs0"], "a replica set: transactions"
    assert "rs.initiate" in " ".join(services["mongodb"]["healthcheck"]["test"])
    assert "replicaSet=rs0" in services["orders"]["environment"]["MICROSHOP_MONGO_URL"]

    def after(name: str) -> set[str]:
        deps = services[name]["depends_on"]
        assert all(d == {"condition": "service_healthy"} for d in deps.values())
        return set(deps)

    for name in APP:
        assert set(INFRA) <= after(name)
    first = {"customers", "alerts", "analytics"}
    for name in first:
        assert after(name) == set(INFRA)
    assert first <= after("products") and first <= after("orders")
    assert {"products", "orders"} | first <= after("gateway")


@pytest.fixture(scope="module")
def host_compose(cli: list[str], images: BuiltImages, docker: str, namespace: str) -> Iterator[dict[str, int]]:
    """compose.yaml + compose.host.yaml: the app services on this host's RabbitMQ/Redis and a test SecantusDB."""
    db: Proc = secantus_proc().start()
    ports = {name: free_port() for name in APP}
    project = f"microshoptest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "MICROSHOP_IMAGE": images.shop,
           "MICROSHOP_NAMESPACE": f"{namespace}compose.",
           **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    compose = ["bash", str(ROOT / "scripts" / "compose.sh"), str(COMPOSE), str(HOST), "--"]
    try:
        wait_secantus(db)
        env["HOST_MONGO_URL"] = secantus_url(port_of(db))
        up = subprocess.run([*compose, "up", "-d", "--no-deps", *APP], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=600, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        healthy = wait_until(lambda: all(health(docker, project, name) == "healthy" for name in APP), 180, 1)
        assert healthy, {name: health(docker, project, name) for name in APP}
        yield ports
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "10"], env=env, cwd=ROOT, capture_output=True,
                       timeout=300, check=False)
        db.stop()


def health(docker: str, project: str, service: str) -> str:
    out = subprocess.run([docker, "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                          "--filter", f"label=com.docker.compose.service={service}",
                          "--format", "{{.Status}}"], capture_output=True, text=True, timeout=30, check=False)
    status = out.stdout.strip()
    return "healthy" if "(healthy)" in status else status or "absent"


async def test_compose_app_services_serve_the_shop_on_host_infrastructure(host_compose: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{host_compose['gateway']}/api", timeout=30) as api:
        r = await api.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
        product = await create_product(api, admin, stock=3)
        buyer = await new_customer(api)
        order = await place_order(api, buyer, [(product["id"], 1)])
        assert (await wait_for_status(api, buyer, order["id"], timeout=60))["status"] == "confirmed"
