"""From a Shop's spec to the shop chart's values: nearly the identity, by contract.

The chart's values mirror the spec field for field. What differs:

* operator-only fields (``deletion``) are not chart values;
* the operator creates the JWT, admin and infra Secrets itself, so the chart must not (``create: false``),
  and both sides must agree on their names, so the operator always passes them explicitly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from microshop_operator.config import default_chart

# Spec fields that steer the operator and mean nothing to the chart.
OPERATOR_ONLY_FIELDS = ("deletion",)

INFRASTRUCTURE = ("mongodb", "redis", "rabbitmq")
Topology = Mapping[str, Mapping[str, Any]]


def chart_topology(chart: Path | None = None) -> dict[str, dict[str, Any]]:
    """The shop's services as the chart knows them: its ``files/topology.yaml``, generated from the service
    registry (services/shopkit/registry.py); service name → port, callers, infra, ... in the chart's order.
    The operator renders that chart, so it reads the services from it too (``MICROSHOP_OPERATOR_CHART``)."""
    chart = chart or Path(os.environ.get("MICROSHOP_OPERATOR_CHART", "").strip() or default_chart())
    data: dict[str, dict[str, Any]] = yaml.safe_load((chart / "files" / "topology.yaml").read_text())
    return data


TOPOLOGY = chart_topology()
SERVICES: tuple[str, ...] = tuple(TOPOLOGY)


def users_of(kind: str, topology: Topology = TOPOLOGY) -> tuple[str, ...]:
    """The services with their own user on managed ``kind`` (those that use it), sorted."""
    return tuple(sorted(name for name, entry in topology.items() if kind in entry.get("infra", ())))
DEFAULT_ADMIN_EMAIL = "admin@example.com"


class InvalidSpec(ValueError):
    """A spec the schema lets through but that cannot work; the user must change it."""


@dataclass(frozen=True)
class SecretNames:
    jwt: str
    admin: str
    admin_email: str
    infra: str


def secret_names(shop_name: str, spec: Mapping[str, Any]) -> SecretNames:
    """The chart's defaults (``<release>-jwt``, ``-admin``, ``-infra``) unless the spec names them."""
    auth = spec.get("auth") or {}
    jwt = (auth.get("jwtKeySecret") or {}).get("name") or f"{shop_name}-jwt"
    admin_spec = auth.get("adminSecret") or {}
    admin = admin_spec.get("name") or f"{shop_name}-admin"
    infra = (spec.get("infraSecret") or {}).get("name") or f"{shop_name}-infra"
    return SecretNames(jwt=jwt, admin=admin, admin_email=admin_spec.get("email") or DEFAULT_ADMIN_EMAIL,
                       infra=infra)


def validate(spec: Mapping[str, Any]) -> None:
    """Cross-field rules that an OpenAPI schema cannot express."""
    services = spec.get("services") or {}
    for name, service in services.items():
        scaling = (service or {}).get("autoscaling") or {}
        low, high = scaling.get("minReplicas"), scaling.get("maxReplicas")
        if scaling.get("enabled") and low is not None and high is not None and low > high:
            raise InvalidSpec(f"spec.services.{name}.autoscaling: minReplicas ({low}) > maxReplicas ({high})")
    if (services.get("gateway") or {}).get("enabled") is False:
        raise InvalidSpec("spec.services.gateway.enabled: the gateway is the shop's only entry and cannot be off")
    for name in INFRASTRUCTURE:
        infra = spec.get(name) or {}
        if infra.get("managed") is False and not (infra.get("external") or {}).get("secretName"):
            raise InvalidSpec(f"spec.{name}.external.secretName is required when spec.{name}.managed is false")
    ingress = spec.get("ingress") or {}
    tls = ingress.get("tls") or {}
    if ingress.get("enabled") and tls.get("enabled") and not tls.get("secretName"):
        raise InvalidSpec("spec.ingress.tls.secretName is required when spec.ingress.tls.enabled is true")


def spec_to_values(shop_name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    values = {key: copy.deepcopy(value) for key, value in spec.items() if key not in OPERATOR_ONLY_FIELDS}
    names = secret_names(shop_name, spec)
    auth = values.setdefault("auth", {})
    auth["jwtKeySecret"] = {**(auth.get("jwtKeySecret") or {}), "name": names.jwt, "create": False}
    auth["adminSecret"] = {**(auth.get("adminSecret") or {}), "name": names.admin, "create": False}
    values["infraSecret"] = {**(values.get("infraSecret") or {}), "name": names.infra, "create": False}
    return values


def enabled_services(spec: Mapping[str, Any], known: tuple[str, ...] = SERVICES) -> list[str]:
    services = spec.get("services") or {}
    return [name for name in known if (services.get(name) or {}).get("enabled", True)]


def managed_infrastructure(spec: Mapping[str, Any]) -> list[str]:
    return [name for name in INFRASTRUCTURE if (spec.get(name) or {}).get("managed", True)]


def clustered_infrastructure(spec: Mapping[str, Any]) -> list[str]:
    """The managed components that run as clusters (``spec.<kind>.replicas`` > 1: MongoDB, RabbitMQ)."""
    return [name for name in managed_infrastructure(spec) if int((spec.get(name) or {}).get("replicas") or 1) > 1]
