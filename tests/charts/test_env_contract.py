"""The chart sets exactly the environment the services read.

Names come from the code, not a list: for each ``services/<svc>/settings.py`` its ``Settings`` class
gives ``MICROSHOP_`` + field name. The rule, per service (also in docs/kubernetes.md):

1. every ``MICROSHOP_*`` variable the chart sets on a service is a setting that service reads;
2. the chart sets every setting that has no default, every setting whose default points at the
   loopback interface (in a pod, 127.0.0.1 is the pod itself, never another service or the
   infrastructure), and the settings listed in CLUSTER_REQUIRED; every other setting keeps its
   documented default, which is safe in the cluster;
3. the values the chart sets parse with that service's Settings class, and the port the chart uses
   is the port the service defaults to.

Besides ``MICROSHOP_*`` the chart sets only helper variables that carry a managed component's password
from the infra Secret into a connection URL (``MONGODB_PASSWORD`` → ``$(MONGODB_PASSWORD)`` in
``MICROSHOP_MONGO_URL``; Kubernetes expands ``$(VAR)`` from entries defined earlier in the list). They
have no ``MICROSHOP_`` prefix because no service reads them: each comes from a Secret and is referenced
by a later ``MICROSHOP_*`` value (rule 0). Rule 3 parses the values after that expansion.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tests.charts.conftest import ROOT, SHOP_CHART, Render, by_kind
from tests.charts.test_infra_credentials import expand
from tests.charts.test_render import EXTERNAL_INFRA, FLIPPED, MIXED_INFRA, OBSERVABILITY
from tests.support.services import CHART_ORDER

SERVICES = CHART_ORDER
# Settings whose default works on a laptop but not in a cluster, for reasons other than loopback:
CLUSTER_REQUIRED = {
    "log_format": "logs are JSON in the cluster",
    "jwt_private_key_file": "every customers replica must sign with the same key (else a generated one)",
    "admin_email": "the first admin comes from configuration",
    "admin_password": "the first admin comes from a Secret",
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
# Stand-ins for values the chart takes from Secrets, so rule 3 can parse them.
SECRET_STANDINS = {"MICROSHOP_MONGO_URL": "mongodb://db:27017", "MICROSHOP_REDIS_URL": "redis://cache:6379/0",
                   "MICROSHOP_RABBITMQ_URL": "amqp://u:p@mq:5672/", "MICROSHOP_ADMIN_PASSWORD": "s3cret-passw0rd",
                   "MONGODB_PASSWORD": "m0ngoPassw0rd", "REDIS_PASSWORD": "red1sPassw0rd",
                   "RABBITMQ_PASSWORD": "rabb1tPassw0rd"}
# The only names without the MICROSHOP_ prefix the chart may set on a service (see the module docstring).
HELPER_VARIABLES = {"MONGODB_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"}


def settings_class(service: str) -> type[BaseSettings]:
    assert (ROOT / "services" / service / "settings.py").is_file(), f"services/{service}/settings.py is missing"
    module = importlib.import_module(f"{service}.settings")
    cls: type[BaseSettings] = module.Settings
    return cls


def env_name(cls: type[BaseSettings], field: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def chart_env(objects: list[dict[str, Any]], service: str) -> dict[str, dict[str, Any]]:
    container = by_kind(objects, "Deployment")[f"shop-{service}"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def needs_setting_in_cluster(field: str, default: Any, required: bool) -> bool:
    if required or field in CLUSTER_REQUIRED:
        return True
    raw = default.get_secret_value() if isinstance(default, SecretStr) else default
    return isinstance(raw, str) and any(host in raw for host in LOOPBACK)


@pytest.mark.parametrize("variant", ["defaults", "external-infra", "flipped", "mixed-infra", "observability"])
@pytest.mark.parametrize("service", SERVICES)
def test_chart_env_matches_settings(render: Render, service: str, variant: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cls = settings_class(service)
    values = {"defaults": {}, "external-infra": EXTERNAL_INFRA, "flipped": FLIPPED, "mixed-infra": MIXED_INFRA,
              "observability": OBSERVABILITY}[variant]
    objects = render(SHOP_CHART, values)
    if f"shop-{service}" not in by_kind(objects, "Deployment"):
        assert service == "analytics"
        assert variant == "flipped"
        return
    env = chart_env(objects, service)
    fields = {env_name(cls, name): (name, info) for name, info in cls.model_fields.items()}

    # Rule 0: helper variables only carry a Secret's value into a later MICROSHOP_* value.
    names = list(env)
    for var in names:
        if var.startswith("MICROSHOP_"):
            continue
        assert var in HELPER_VARIABLES, f"{service}: the chart sets {var}, neither MICROSHOP_* nor a known helper"
        assert "secretKeyRef" in env[var].get("valueFrom", {}), f"{service}: {var} must come from a Secret"
        later = [env[v].get("value", "") for v in names[names.index(var) + 1:] if v.startswith("MICROSHOP_")]
        assert any(f"$({var})" in value for value in later), f"{service}: {var} is set but no URL uses it"
    for var, entry in env.items():
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
            assert ref in names[:names.index(var)], f"{service}: {var} references $({ref}) not defined before it"

    # Rule 1: nothing the service would ignore.
    unread = {name for name in env if name.startswith("MICROSHOP_")} - set(fields)
    assert not unread, f"{service}: the chart sets {sorted(unread)}, which {cls.__module__}.Settings does not read"

    # Rule 2: nothing the cluster needs is left at a laptop default.
    missing = [var for var, (name, info) in fields.items()
               if needs_setting_in_cluster(name, info.default, info.is_required()) and var not in env]
    assert not missing, f"{service}: the chart must set {missing}"

    # Rule 3: the chart's values parse, and the port is the service's own.
    for var in list(os.environ):
        if var.startswith("MICROSHOP_"):
            monkeypatch.delenv(var)
    expanded: dict[str, str] = {}
    for var, entry in env.items():
        expanded[var] = (expand(entry["value"], expanded) if "value" in entry
                         else SECRET_STANDINS.get(var, "from-a-secret"))
        if var.startswith("MICROSHOP_"):
            assert "$(" not in expanded[var], f"{service}: {var} would reach the service unexpanded"
            monkeypatch.setenv(var, expanded[var])
    settings = cls()
    assert settings.model_dump()["port"] == cls.model_fields["port"].default
    assert settings.model_dump()["log_format"] == "json"
    assert settings.model_dump()["host"] == "0.0.0.0"
    # MongoDB (the chart's, or an external one) deletes expired documents through TTL indexes; the
    # services' own sweep (``sweep``) is for SecantusDB, whose TTL sweeper holds back WiredTiger's cleanup.
    assert settings.model_dump()["mongo_expiry"] == "ttl-index"


def test_gateway_reaches_every_service_by_its_chart_url(render: Render) -> None:
    cls = settings_class("gateway")
    env = chart_env(render(SHOP_CHART), "gateway")
    for service, port in zip(SERVICES[1:], range(8001, 8006), strict=True):
        var = f"MICROSHOP_{service.upper()}_URL"
        assert var in {env_name(cls, f) for f in cls.model_fields}
        assert env[var]["value"] == f"http://shop-{service}:{port}"


def test_customers_key_file_is_the_mounted_secret(render: Render) -> None:
    settings_class("customers")
    objects = render(SHOP_CHART)
    pod = by_kind(objects, "Deployment")["shop-customers"]["spec"]["template"]["spec"]
    key_file = Path(chart_env(objects, "customers")["MICROSHOP_JWT_PRIVATE_KEY_FILE"]["value"])
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert Path(mounts["jwt-key"]) / "private.pem" == key_file
    volume = next(v for v in pod["volumes"] if v["name"] == "jwt-key")
    assert volume["secret"]["items"] == [{"key": "private.pem", "path": "private.pem"}]
