"""The chart's RBAC is exactly what the operator uses: derived from every call it made in this test suite.

The emulator authorizes each request of an operator replica against the Roles the chart installed and
records it (tests/operator/emulator.py). Run after every other operator test (conftest orders it
last): no call was denied, and every verb the default chart grants was used — beyond the few listed
in GRANTED_BUT_UNUSED, each with the reason the suite cannot exercise it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from tests.operator import test_ha, test_lifecycle, test_operator
from tests.operator.emulator import ClusterEmulator
from tests.operator.install import Release, render

# (apiGroup, resource, verb) the default chart grants that no test can make the operator use.
GRANTED_BUT_UNUSED: dict[tuple[str, str, str], str] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"):
        "the operator's apply creates the Shop CRD only where it is missing; every emulator has it installed",
}
# The one grant at the cluster scope of a namespaced install: applying the Shop CRD at start (Helm never
# upgrades crds/), limited to that CRD's name.
CRD_GRANT = ("apiextensions.k8s.io", "customresourcedefinitions", ("shops.microshop.dev",))
SCENARIO_MODULES = (test_operator, test_lifecycle, test_ha)


def _complete_run(session: pytest.Session) -> list[str]:
    """The operator tests this session did not include (the comparison needs all of them)."""
    selected = {(Path(str(item.fspath)).stem, getattr(item, "originalname", item.name)) for item in session.items}
    return [f"{module.__name__}.{name}" for module in SCENARIO_MODULES
            for name, function in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("test_") and function.__module__ == module.__name__
            and (module.__name__.rsplit(".", 1)[-1], name) not in selected]


def test_the_chart_grants_exactly_what_the_operator_uses(cluster: ClusterEmulator, helm: Path,
                                                         request: pytest.FixtureRequest) -> None:
    chart = Release("microshop-operator", "shops", render(helm, "microshop-operator", "shops"))  # defaults
    # Every namespaced release of the suite (the cluster-wide one, test_lifecycle's "wide-op", is not the default).
    calls = [c for c in cluster.calls if c.user.endswith(f":{chart.service_account}")
             and not c.user.startswith("system:serviceaccount:wide-op:")]
    missing = _complete_run(request.session)
    assert calls or missing, "no call of the operator was recorded though the operator tests ran"
    denied = sorted({(c.user, c.verb, c.group, c.resource, c.namespace) for c in calls if not c.allowed})
    assert not denied, f"calls the chart's RBAC does not allow: {denied}"
    elsewhere = sorted({(c.user, c.namespace, c.resource) for c in calls
                        if c.namespace != c.user.removeprefix("system:serviceaccount:").split(":")[0]
                        and (c.namespace, c.group, c.resource, (c.name,)) != (None, *CRD_GRANT)})
    assert not elsewhere, f"the namespaced install called outside its release namespace: {elsewhere}"
    for rule in chart.rules():
        cluster_scoped = (rule["namespace"] is None and (*rule["apiGroups"], *rule["resources"]) == CRD_GRANT[:2]
                          and tuple(rule.get("resourceNames") or ()) == CRD_GRANT[2])
        assert rule["namespace"] == chart.namespace or cluster_scoped, f"a grant beyond the release namespace: {rule}"
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], f"a wildcard: {rule}"
    granted = {(group, resource, verb) for rule in chart.rules() for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    used = {(c.group, c.resource, c.verb) for c in calls}
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    if missing:
        pytest.skip(f"only a part of the operator suite ran (not {', '.join(missing)}): whether every grant "
                    "is used can only be judged after all of tests/operator")
    unused = granted - used - set(GRANTED_BUT_UNUSED)
    assert not unused, f"the chart grants what the operator never used: {sorted(unused)}"
