"""What skaffold and docs/kubernetes.md install reaches the example Shops: the operator chart as each of
them installs it (its namespace and values) watches the namespace of every Shop in examples/ and has
the rights there. A Shop in a namespace the operator does not serve is never reconciled, silently."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import OPERATOR_CHART, ROOT, run_helm

SHOP_API = "microshop.dev"


@dataclass
class Install:
    """One install of the operator chart: where, with what values (files and --set)."""

    what: str
    namespace: str
    values: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)


def example_shops() -> list[tuple[str, str]]:
    """(name, namespace) of every Shop in examples/ (kubectl apply puts one without a namespace in default)."""
    shops = [(doc["metadata"]["name"], doc["metadata"].get("namespace") or "default")
             for path in sorted((ROOT / "examples").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc
             and doc.get("kind") == "Shop" and str(doc.get("apiVersion", "")).startswith(f"{SHOP_API}/")]
    assert shops, "examples/ has no Shop"
    return shops


def skaffold_install() -> Install:
    """The operator release of skaffold.yaml's default profile; image templates don't bear on namespaces."""
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    releases = [r for r in config["deploy"]["helm"]["releases"] if r["chartPath"] == "charts/microshop-operator"]
    assert len(releases) == 1, releases
    release = releases[0]
    assert not release.get("valuesFiles") and not release.get("setFiles"), "read them here too"
    values: dict[str, Any] = dict(release.get("overrides") or {})
    sets = [f"{k}={v}" for k, v in (release.get("setValues") or {}).items()]
    return Install("skaffold.yaml", release.get("namespace") or "default", values, sets)


def docs_install() -> Install:
    """The operator chart's helm command in docs/kubernetes.md ("The operator chart")."""
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    section = text.split("## The operator chart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no sh block in the operator chart's section"
    command = block.group(1).replace("\\\n", " ")
    lines = [line for line in command.splitlines() if "charts/microshop-operator" in line]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0], comments=True)
    assert argv[:3] == ["helm", "upgrade", "--install"], argv
    install = Install("docs/kubernetes.md", "default")
    args = iter(argv[5:])
    for arg in args:
        flag, _, inline = arg.partition("=")
        if flag in ("-n", "--namespace"):
            install.namespace = inline or next(args)
        elif flag in ("--set", "--set-string"):
            install.sets.append(inline or next(args))
        elif flag in ("-f", "--values"):
            install.values.update(yaml.safe_load((ROOT / (inline or next(args))).read_text()) or {})
        elif flag in ("--timeout",):
            inline or next(args)
        else:
            assert flag in ("--create-namespace", "--wait", "--atomic"), f"unknown helm flag {arg}: read it here"
    assert "kubectl apply -f examples/shop.yaml" in command, "the docs apply the example Shop there"
    return install


@pytest.mark.parametrize("install", [skaffold_install(), docs_install()], ids=lambda i: i.what)
def test_the_operator_serves_every_example_shop(install: Install, helm: Path, tmp_path: Path) -> None:
    argv = ["template", "microshop-operator", str(OPERATOR_CHART), "--namespace", install.namespace]
    for item in install.sets:
        argv += ["--set", item]
    out = run_helm(helm, *argv, values=install.values, tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    objects = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": account, "namespace": install.namespace}
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects
             if o["kind"] in ("Role", "ClusterRole")}

    def shop_rights(namespace: str) -> bool:
        """A binding of the operator's account, in that namespace or cluster-wide, to a role granting shops."""
        for binding in objects:
            if subject not in (binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef", {})
            if binding["kind"] == "RoleBinding" and binding["metadata"].get("namespace", install.namespace) == namespace:
                role = roles.get((ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"]))
            elif binding["kind"] == "ClusterRoleBinding":
                role = roles.get(("ClusterRole", None, ref["name"]))
            else:
                continue
            if role and any(SHOP_API in r.get("apiGroups", []) and "shops" in r.get("resources", [])
                            and {"list", "watch", "patch"} <= set(r.get("verbs", [])) for r in role["rules"]):
                return True
        return False

    for name, namespace in example_shops():
        assert f"--namespace={namespace}" in args or "--all-namespaces" in args, (
            f"{install.what} installs the operator into {install.namespace} watching {args}: Shop {name} in "
            f"{namespace} would never be reconciled")
        assert shop_rights(namespace), f"{install.what}: the operator has no rights on Shops in {namespace}"


def test_the_dev_and_e2e_kind_clusters_can_run_side_by_side() -> None:
    """make kind-up / skaffold use kind-config.yaml, make e2e tests/e2e/kind-config.yaml: no host port twice."""
    used: dict[str, Path] = {}
    for path, creator in ((ROOT / "kind-config.yaml", ROOT / "scripts" / "kind-up.sh"),
                          (ROOT / "tests" / "e2e" / "kind-config.yaml", ROOT / "mk" / "operator.mk")):
        assert f"--config {path.relative_to(ROOT)}" in creator.read_text(), f"{creator} creates its cluster from {path}"
        config = yaml.safe_load(path.read_text())
        for node in config["nodes"]:
            for mapping in node.get("extraPortMappings") or ():
                key = f"{mapping.get('listenAddress', '0.0.0.0')}:{mapping['hostPort']}"
                wildcard = f"0.0.0.0:{mapping['hostPort']}"
                clash = used.get(key) or used.get(wildcard) or (
                    key.startswith("0.0.0.0:") and next((p for k, p in used.items()
                                                        if k.endswith(f":{mapping['hostPort']}")), None))
                assert not clash, f"{path} and {clash} both claim host port {key}"
                used[key] = path
    assert used, "the dev cluster maps its ingress ports"
