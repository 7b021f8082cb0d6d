"""A local Prometheus scraping a local shop (``make dev ARGS=--prometheus``, the integration test).

Uses the ``prometheus`` binary of the Debian package (``apt-get install prometheus``; ``python -m
devtools.infra --prometheus`` installs it). The scrape configuration is generated from the shop's ports:
one job ``microshop`` with a target per service, labelled ``service=<name>`` like the chart's
ServiceMonitor/PodMonitor do, and the rules in devtools/prometheus-rules.yml. Its data lives in a
temporary directory (or ``--storage.tsdb.path`` under the dev state directory) and it stops with the shop.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.procs import ROOT, Proc

RULES = ROOT / "devtools" / "prometheus-rules.yml"
DEFAULT_PORT = 9090
SCRAPE_INTERVAL = "5s"


def find_prometheus() -> str | None:
    """The prometheus binary on PATH (or the Debian package's), None when it is not installed."""
    return shutil.which("prometheus") or next(
        (str(p) for p in (Path("/usr/bin/prometheus"),) if p.is_file()), None)


def scrape_config(targets: Mapping[str, int], *, interval: str = SCRAPE_INTERVAL,
                  rules: Path = RULES, host: str = "127.0.0.1") -> dict[str, Any]:
    """prometheus.yml for ``targets`` (service name → HTTP port; each serves /metrics)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "microshop",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"{host}:{port}"], "labels": {"service": name}}
                               for name, port in sorted(targets.items())],
        }],
    }


@dataclass
class LocalPrometheus:
    """One Prometheus process; ``start()`` writes its configuration into ``state_dir`` and waits until ready."""

    targets: Mapping[str, int]
    state_dir: Path
    port: int = DEFAULT_PORT
    interval: str = SCRAPE_INTERVAL  # scrape and rule evaluation
    binary: str | None = field(default_factory=find_prometheus)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make_proc(self) -> Proc:
        if self.binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus, "
                               "or python -m devtools.infra --prometheus)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.targets, interval=self.interval), sort_keys=False))
        self.proc = Proc(
            name="prometheus",
            argv=[self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.state_dir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=2d",
                  "--log.level=warn"],
            ready_url=f"{self.url}/-/ready",
        )
        return self.proc

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the ``result`` list of a vector answer."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own local server)
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{promql}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def api(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:  # noqa: S310
            return json.load(response)["data"]
