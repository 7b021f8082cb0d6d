"""Install charts/microshop-operator into the emulator and run its pods as local processes.

``helm template`` renders the chart; every object is created in the emulator (so its RBAC objects are
what the emulator authorizes against), and each replica of the Deployment runs as
``python -m microshop_operator`` with the container's own args and env, under the service account's
identity (a token ``system:serviceaccount:<ns>:<sa>#<pod>``, see tests/operator/emulator.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.operator.api import Api

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_CHART = ROOT / "charts" / "microshop-operator"

# Where the chart's kinds live in the REST API: (prefix, plural, namespaced).
_PATHS = {
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
}


def render(helm: Path, release: str, namespace: str, values: Mapping[str, Any] | None = None,
           tmp: Path | None = None) -> list[dict[str, Any]]:
    argv = [str(helm), "template", release, str(OPERATOR_CHART), "--namespace", namespace]
    if values:
        assert tmp is not None
        values_file = tmp / f"{release}-values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", str(values_file)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@dataclass
class Release:
    name: str
    namespace: str
    objects: list[dict[str, Any]]

    def only(self, kind: str) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind]
        assert len(found) == 1, f"{len(found)} {kind}"
        return found[0]

    @property
    def service_account(self) -> str:
        return str(self.only("ServiceAccount")["metadata"]["name"])

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def replicas(self) -> int:
        return int(self.only("Deployment")["spec"]["replicas"])

    def rules(self) -> list[dict[str, Any]]:
        """Every RBAC rule the chart grants its service account, with the namespace it applies in (None: all)."""
        roles = {(o["kind"], o["metadata"].get("namespace", self.namespace), o["metadata"]["name"]): o
                 for o in self.objects if o["kind"] in ("Role", "ClusterRole")}
        granted: list[dict[str, Any]] = []
        for binding in self.objects:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            assert {"kind": "ServiceAccount", "name": self.service_account, "namespace": self.namespace} \
                in binding["subjects"]
            scope = binding["metadata"].get("namespace", self.namespace) if binding["kind"] == "RoleBinding" \
                else None
            ref = binding["roleRef"]
            role = roles[(ref["kind"], scope if ref["kind"] == "Role" else self.namespace, ref["name"])]
            granted += [{**rule, "namespace": scope} for rule in role["rules"]]
        return granted


async def install(api: Api, release: Release) -> None:
    for obj in release.objects:
        prefix, plural, namespaced = _PATHS[(obj["apiVersion"], obj["kind"])]
        namespace = obj["metadata"].get("namespace", release.namespace)
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespaced else f"{prefix}/{plural}"
        await api.create(path, obj)


def start_pod(release: Release, pod: str, *, server: str, liveness_url: str, workdir: Path,
              helm: Path, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """One replica of the chart's Deployment, as a local process with the container's args and env."""
    container = release.only("Deployment")["spec"]["template"]["spec"]["containers"][0]
    kubeconfig = workdir / f"{pod}.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": pod, "user": {"token": f"{release.user}#{pod}"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": pod}}],
    }))
    field_refs = {"metadata.name": pod, "metadata.namespace": release.namespace}
    env = {**os.environ}
    for var in container.get("env") or ():
        env[var["name"]] = var["value"] if "value" in var else field_refs[var["valueFrom"]["fieldRef"]["fieldPath"]]
    env.update({
        "KUBECONFIG": str(kubeconfig),
        # The image's paths, as they are in a checkout:
        "MICROSHOP_OPERATOR_CHART": str(ROOT / "charts" / "microshop"),
        "MICROSHOP_OPERATOR_HELM": str(helm),
        "HELM_CACHE_HOME": str(workdir / "helm-cache"), "HELM_CONFIG_HOME": str(workdir / "helm-config"),
        "HELM_DATA_HOME": str(workdir / "helm-data"),
        # Several replicas run side by side here: each its own metrics port (0: none).
        "MICROSHOP_OPERATOR_METRICS_PORT": str(metrics_port),
    })
    args = [arg for arg in container["args"] if not arg.startswith("--liveness=")]
    log = (workdir / f"{pod}.log").open("wb")
    with log:
        return subprocess.Popen([sys.executable, "-m", "microshop_operator", *args, f"--liveness={liveness_url}"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


async def stop_pod(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, then wait without blocking the event loop (the emulator serves the shutdown's calls)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
