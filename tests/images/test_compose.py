"""compose.yaml: valid (compose's own `config` and the compose-spec schema), the chart's settings and security,
and the route without a registry (`make compose-up-host`: compose.host.yaml) brought up, walked and taken down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from devtools.procs import free_port
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, SERVICES
from products.seed import DEMO_PRODUCTS
from tests.images.conftest import ROOT, SHOP_CHART, TAG, BuiltImages, run_helm
from tests.support.saga import auth, login, new_customer, place_order, wait_for_status

pytestmark = pytest.mark.timeout(1800)

COMPOSE = ROOT / "compose.yaml"
OVERRIDE = ROOT / "compose.override.yaml"
HOST = ROOT / "compose.host.yaml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
APP = [s.name for s in SERVICES]
INFRA = ("mongodb", "rabbitmq", "redis")
COMPOSE_SHOP = ROOT / "scripts" / "compose-shop.sh"


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


@pytest.mark.parametrize(("files", "infra"),
                         [((COMPOSE,), ()), ((COMPOSE, OVERRIDE), INFRA), ((COMPOSE, HOST), ("mongodb",))],
                         ids=["base", "registry", "host"])
def test_compose_cli_accepts_the_files(cli: list[str], files: tuple[Path, ...], infra: tuple[str, ...]) -> None:
    argv = [*cli, *[a for f in files for a in ("-f", str(f))], "config"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
                         env={**os.environ, "MICROSHOP_IMAGE": "microshop:0.1.0"})
    assert out.returncode == 0, out.stderr
    merged = yaml.safe_load(out.stdout)
    assert set(APP) | set(infra) == set(merged["services"])
    if HOST in files:
        assert all(svc["network_mode"] == "host" for svc in merged["services"].values())
        assert "ports" not in merged["services"]["gateway"]
        assert not merged.get("networks"), "the host variant needs no container network"
        assert merged["services"]["mongodb"]["image"] == "microshop-secantus:0.1.0", "built here, not pulled"


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
        if name == "products":  # compose seeds the demo catalog of `make dev`; the chart does not
            expected |= {"MICROSHOP_SEED_DEMO"}
            assert svc["environment"]["MICROSHOP_SEED_DEMO"] == "true"
        assert set(svc["environment"]) == expected, name
        assert svc["environment"]["MICROSHOP_LOG_FORMAT"] == "json"
        assert "ports" not in svc, "only compose.override.yaml publishes a port (the gateway's)"
    assert load(OVERRIDE)["services"]["gateway"]["ports"] == ["127.0.0.1:${GATEWAY_PORT:-8000}:8000"]


def depends_on(files: tuple[Path, ...], name: str) -> set[str]:
    """What ``name`` waits for with these files (compose merges the files' depends_on mappings)."""
    deps: dict[str, Any] = {}
    for path in files:
        deps.update(load(path)["services"].get(name, {}).get("depends_on", {}))
    assert all(d == {"condition": "service_healthy"} for d in deps.values())
    return set(deps)


def test_infrastructure_official_images_health_and_start_order() -> None:
    registry = (COMPOSE, OVERRIDE)
    services = load(OVERRIDE)["services"]
    values = yaml.safe_load((SHOP_CHART / "values.yaml").read_text())
    for name in INFRA:
        assert services[name]["image"] == values[name]["image"], "the chart's pinned versions"
        assert services[name]["healthcheck"]["test"]
    assert services["mongodb"]["command"][:2] == ["--replSet", "rs0"], "a replica set: transactions"
    assert "rs.initiate" in " ".join(services["mongodb"]["healthcheck"]["test"])
    assert "replicaSet=rs0" in load(COMPOSE)["services"]["orders"]["environment"]["MICROSHOP_MONGO_URL"]
    first = {"customers", "alerts", "analytics"}
    for files, infra in ((registry, set(INFRA)), ((COMPOSE, HOST), {"mongodb"})):
        for name in APP:
            assert infra <= depends_on(files, name)
        for name in first:
            assert depends_on(files, name) == infra
        assert first <= depends_on(files, "products") and first <= depends_on(files, "orders")
        assert {"products", "orders"} | first <= depends_on(files, "gateway")


def project_leftovers(docker: str, project: str) -> dict[str, list[str]]:
    """The containers, volumes and networks that carry the compose project's label."""
    found = {}
    for kind in ("container", "volume", "network"):
        argv = [docker, kind, "ls", "--filter", f"label=com.docker.compose.project={project}", "--format",
                "{{.Names}}" if kind == "container" else "{{.Name}}"]
        if kind == "container":
            argv.insert(3, "-a")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        found[kind] = out.stdout.split()
    return found


async def test_compose_up_host_serves_the_seeded_shop_and_down_leaves_nothing(
        cli: list[str], images: BuiltImages, docker: str, namespace: str) -> None:
    """`make compose-up-host` as its script runs it (on free ports), an order walked, then `make compose-down`."""
    ports = {name: free_port() for name in [*APP, "mongo"]}
    project = f"microshoptest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "IMAGE_TAG": TAG, "COMPOSE_WAIT_SECONDS": "240",
           "MICROSHOP_NAMESPACE": f"{namespace}compose.", "PYTHON": sys.executable,
           **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()}}

    def compose_shop(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(COMPOSE_SHOP), *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=900, check=False)

    try:
        up = compose_shop("up", "host")
        assert up.returncode == 0, up.stdout + up.stderr[-4000:]
        gateway = f"http://127.0.0.1:{ports['gateway']}/api"
        assert f"microshop: {gateway}" in up.stdout
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as api:
            r = await api.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
            catalog = (await api.get("/products", params={"limit": 50})).json()["items"]
            assert {p["sku"] for p in catalog} == {str(p["sku"]) for p in DEMO_PRODUCTS}, "seeded as by make dev"
            await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
            buyer = await new_customer(api)
            mug = next(p for p in catalog if p["sku"] == "MUG-001")
            order = await place_order(api, buyer, [(mug["id"], 1)])
            assert (await wait_for_status(api, buyer, order["id"], timeout=60))["status"] == "confirmed"
            one = await api.get(f"/orders/{order['id']}", headers=auth(buyer))
            assert one.status_code == 200 and one.json()["status"] == "confirmed", one.text
        assert project_leftovers(docker, project)["volume"] == [f"{project}_mongodb"]
    finally:
        down = compose_shop("down")
    assert down.returncode == 0, down.stdout + down.stderr[-4000:]
    assert project_leftovers(docker, project) == {"container": [], "volume": [], "network": []}
    assert not (ROOT / ".dev" / f"compose-{project}.route").exists()
