"""The operator image: its bundled helm renders the bundled shop chart through the operator's own code, and
with no cluster configuration it stops at once with a clear message (no endless login retries)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microshop_operator.__main__ import cluster_config_problem
from tests.images.conftest import BuiltImages, docker_run

# The operator's own render path (config.get_config → Renderer → helm template), as the handlers use it.
RENDER = """
import asyncio, collections, shutil
from microshop_operator.config import get_config
from microshop_operator.render import Renderer
cfg = get_config()
objects = asyncio.run(Renderer(cfg.helm, cfg.chart).render("shop", "shop-ns", {"image": {"tag": "9.9.9"}}))
kinds = collections.Counter(o["kind"] for o in objects)
images = sorted({c["image"] for o in objects if o["kind"] == "Deployment"
                 for c in o["spec"]["template"]["spec"]["containers"]})
print("helm:", cfg.helm, "chart:", cfg.chart)
print("deployments:", kinds["Deployment"], "statefulsets:", kinds["StatefulSet"])
print("images:", images)
"""


def test_operator_image_renders_the_chart_with_its_bundled_helm(images: BuiltImages, docker: str) -> None:
    out = docker_run(docker, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                     "--security-opt", "no-new-privileges", "--entrypoint", "python", images.operator, "-c", RENDER)
    assert out.returncode == 0, out.stderr
    assert "helm: /usr/local/bin/helm chart: /opt/microshop/charts/microshop" in out.stdout
    assert "deployments: 6 statefulsets: 3" in out.stdout, out.stdout
    assert "images: ['microshop:9.9.9']" in out.stdout, out.stdout
    version = docker_run(docker, "--entrypoint", "helm", images.operator, "version", "--short")
    from devtools.helm import HELM_VERSION

    assert version.stdout.startswith(f"v{HELM_VERSION}+"), version.stdout + version.stderr


def test_operator_image_without_a_cluster_fails_fast(images: BuiltImages, docker: str) -> None:
    started = time.monotonic()
    out = docker_run(docker, "--read-only", "--tmpfs", "/tmp", images.operator, timeout=60)
    assert time.monotonic() - started < 30
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot reach a Kubernetes cluster" in out.stderr and "KUBECONFIG" in out.stderr


def test_cluster_config_problem(tmp_path: Path) -> None:
    token = tmp_path / "token"
    assert "no in-cluster configuration" in str(cluster_config_problem({"HOME": str(tmp_path)}, str(token)))
    token.write_text("t")
    in_cluster = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert cluster_config_problem(in_cluster, str(token)) is None
    assert "names no existing file" in str(cluster_config_problem({"KUBECONFIG": str(tmp_path / "nope")}, "/x"))
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    assert cluster_config_problem({"KUBECONFIG": f"{tmp_path / 'nope'}:{tmp_path / 'kc'}"}, "/x") is None
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    assert cluster_config_problem({"HOME": str(tmp_path)}, "/x") is None


@pytest.mark.timeout(60)
def test_operator_process_without_a_cluster_exits_at_once(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # the venv has the project installed
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "microshop_operator"], env=env, capture_output=True, text=True,
                         timeout=50, check=False)
    assert time.monotonic() - started < 20
    assert out.returncode == 2
    assert "cannot reach a Kubernetes cluster" in out.stderr
