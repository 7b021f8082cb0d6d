"""values.schema.json turns bad values into helm errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.charts.conftest import OPERATOR_CHART, SHOP_CHART, run_helm

BAD_SHOP_VALUES: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (values, field path helm must name, rule)
    "wrong type": ({"services": {"gateway": {"replicas": "two"}}}, "/services/gateway/replicas", "want integer"),
    "negative replicas": ({"services": {"orders": {"replicas": -1}}}, "/services/orders/replicas", "minimum"),
    "bad port": ({"httpRoute": {"enabled": True, "parentRefs": [{"name": "gw", "port": 70000}]}},
                 "/httpRoute/parentRefs/0/port", "maximum"),
    "unknown key": ({"services": {"gateway": {"replica": 2}}}, "/services/gateway", "'replica' not allowed"),
    "unknown service": ({"services": {"payments": {"enabled": True, "replicas": 1}}}, "/services",
                        "'payments' not allowed"),
    "missing required": ({"image": {"repository": None}}, "/image", "missing property 'repository'"),
    "bad enum": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "must be one of"),
    # helm reports property-name errors at '' but names the offending key.
    "bad env name": ({"services": {"alerts": {"env": {"not-an-env": "x"}}}}, "", "invalid propertyName 'not-an-env'"),
    "external without secret": ({"redis": {"managed": False}}, "/redis/external/secretName", "minLength"),
    "bad infra secret name": ({"infraSecret": {"name": "Bad_Name"}}, "/infraSecret/name", "does not match pattern"),
    "ttl out of range": ({"auth": {"accessTokenTtlSeconds": 5}}, "/auth/accessTokenTtlSeconds", "minimum"),
}


@pytest.mark.parametrize("case", sorted(BAD_SHOP_VALUES))
def test_shop_chart_rejects(helm: Path, tmp_path: Path, case: str) -> None:
    values, field, rule = BAD_SHOP_VALUES[case]
    out = run_helm(helm, "template", "shop", str(SHOP_CHART), values=values, tmp=tmp_path)
    assert out.returncode != 0, f"{case}: helm accepted {values}"
    assert "don't meet the specifications of the schema" in out.stderr
    assert f"at '{field}'" in out.stderr, out.stderr
    assert rule in out.stderr, out.stderr


def test_template_level_rules_name_the_field(helm: Path, tmp_path: Path) -> None:
    """Cross-field rules a draft-07 schema cannot express fail in the templates, naming the field."""
    cases = {
        "services.products.autoscaling: minReplicas (4) must not exceed maxReplicas (2)":
            {"services": {"products": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}}},
        "ingress.tls.secretName is required":
            {"ingress": {"enabled": True, "tls": {"enabled": True}}},
        "httpRoute.parentRefs needs at least one Gateway": {"httpRoute": {"enabled": True}},
    }
    for message, values in cases.items():
        out = run_helm(helm, "template", "shop", str(SHOP_CHART), values=values, tmp=tmp_path)
        assert out.returncode != 0
        assert message in out.stderr, out.stderr


def test_valid_zero_replicas_is_accepted(helm: Path, tmp_path: Path) -> None:
    out = run_helm(helm, "template", "shop", str(SHOP_CHART), values={"services": {"alerts": {"replicas": 0}}},
                   tmp=tmp_path)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("values", "field"), [
    ({"replicas": -2}, "/replicas"),
    ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
    ({"peering": True}, "at ''"),
    ({"leaderElection": {"retryPeriodSeconds": 0}}, "/leaderElection/retryPeriodSeconds"),
    ({"clusterWide": "yes"}, "/clusterWide"),
])
def test_operator_chart_rejects(helm: Path, tmp_path: Path, values: dict[str, Any], field: str) -> None:
    out = run_helm(helm, "template", "op", str(OPERATOR_CHART), values=values, tmp=tmp_path)
    assert out.returncode != 0
    assert field in out.stderr, out.stderr
