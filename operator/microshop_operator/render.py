"""Render the shop chart with ``helm template``: the chart is the single source of manifests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class RenderError(Exception):
    """helm could not render the chart with these values (message: helm's own words)."""


def chart_fingerprint(chart: Path) -> str:
    """Changes whenever a file of the chart changes (cheap: names, sizes, mtimes)."""
    digest = hashlib.sha256(str(chart.resolve()).encode())
    for path in sorted(chart.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(chart)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """Every object of a multi-document YAML stream; ``List`` kinds are flattened, empties dropped."""
    objects: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"the chart rendered something that is not a Kubernetes object: {str(doc)[:200]}")
        if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(item for item in doc["items"] if item)
        else:
            objects.append(doc)
    return objects


class Renderer:
    """Runs helm; remembers the last renders so that resyncs of an unchanged Shop cost no process."""

    def __init__(self, helm: str, chart: Path, timeout: float = 60.0, cache_size: int = 64) -> None:
        self.helm = helm
        self.chart = chart
        self.timeout = timeout
        self._cache: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_size

    async def render(self, release: str, namespace: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        key = hashlib.sha256(json.dumps([release, namespace, values, chart_fingerprint(self.chart)],
                                        sort_keys=True, default=str).encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return json.loads(json.dumps(cached))  # callers mutate what they get
        objects = await self._run_helm(release, namespace, values)
        self._cache[key] = objects
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return json.loads(json.dumps(objects))

    async def _run_helm(self, release: str, namespace: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not (self.chart / "Chart.yaml").is_file():
            raise RenderError(f"no chart at {self.chart} (set MICROSHOP_OPERATOR_CHART)")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="shop-values-", delete=False) as handle:
            json.dump(values, handle)  # JSON is YAML
            values_file = handle.name
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.helm, "template", release, str(self.chart),
                    "--namespace", namespace, "--values", values_file, "--skip-tests",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, "HELM_CACHE_HOME": tempfile.gettempdir() + "/helm-cache",
                         "HELM_CONFIG_HOME": tempfile.gettempdir() + "/helm-config",
                         "HELM_DATA_HOME": tempfile.gettempdir() + "/helm-data"},
                )
            except OSError as exc:
                raise RenderError(f"cannot run helm ({self.helm}): {exc}") from exc
            try:
                stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=self.timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RenderError(f"helm template took longer than {self.timeout:.0f}s") from None
        finally:
            os.unlink(values_file)
        if proc.returncode != 0:
            message = stderr.decode(errors="replace").strip() or f"helm exited with {proc.returncode}"
            raise RenderError(message.replace(values_file, "<values>")[-2000:])
        try:
            return parse_manifests(stdout.decode())
        except yaml.YAMLError as exc:
            raise RenderError(f"the chart rendered invalid YAML: {exc}") from exc
