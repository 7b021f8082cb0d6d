"""Shared helpers for the chart tests: a helm binary, rendering, and the repository's paths."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.helm import ensure_helm

ROOT = Path(__file__).resolve().parents[2]
SHOP_CHART = ROOT / "charts" / "microshop"
OPERATOR_CHART = ROOT / "charts" / "microshop-operator"
SHOP_CRD = OPERATOR_CHART / "crds" / "shops.microshop.dev.yaml"

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()


def run_helm(helm: Path, *args: str, values: Mapping[str, Any] | None = None,
             tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(helm), *args]
    if values is not None:
        assert tmp is not None
        values_file = tmp / f"values-{abs(hash(yaml.safe_dump(dict(values))))}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", str(values_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def render(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """``render(chart, values, release=..., namespace=...)`` → the rendered objects; fails on helm errors.

    Renders are cached for the session (helm is the slow part); each call gets its own copy.
    """
    tmp = tmp_path_factory.mktemp("render")
    cache: dict[str, list[dict[str, Any]]] = {}

    def _render(chart: Path, values: Mapping[str, Any] | None = None, release: str = "shop",
                namespace: str = "shop-ns", extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        key = json.dumps([str(chart), values or {}, release, namespace, extra], sort_keys=True)
        if key not in cache:
            out = run_helm(helm, "template", release, str(chart), "--namespace", namespace, *extra,
                           values=values or {}, tmp=tmp)
            assert out.returncode == 0, out.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
        return copy.deepcopy(cache[key])

    return _render


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}
