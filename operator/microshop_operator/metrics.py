"""The operator's Prometheus metrics, served by prometheus_client on their own port (not kopf's liveness).

``MICROSHOP_OPERATOR_METRICS_PORT`` (8081; empty or 0 disables) is the port of ``/metrics``.
Series (docs/observability.md, "Metrics reference"):

* ``microshop_operator_reconciles_total{result}``: reconciles by result (``success``, ``failure``,
  ``paused``, ``error``: a crash or a status write that failed);
* ``microshop_operator_reconcile_seconds``: how long one reconcile (render, apply, prune, status) took;
* ``microshop_operator_shops{phase}``: Shops this operator serves, by the phase in their status;
* ``microshop_operator_drift_repairs_total``: objects whose live state had drifted from what the
  operator last applied (changed by someone else) and that a resync put back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("microshop_operator.metrics")

DEFAULT_PORT = 8081
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Paused")

RECONCILES = Counter("microshop_operator_reconciles", "Shop reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram("microshop_operator_reconcile_seconds", "Duration of one Shop reconcile",
                              buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
SHOPS = Gauge("microshop_operator_shops", "Shops served by this operator, by phase", ["phase"])
DRIFT_REPAIRS = Counter("microshop_operator_drift_repairs",
                        "Objects changed by someone else since the operator applied them, put back by a resync")

for _phase in PHASES:
    SHOPS.labels(_phase)
for _result in ("success", "failure", "paused", "error"):
    RECONCILES.labels(_result)

_phases: dict[str, str] = {}


def shop_phase(uid: str, phase: str | None) -> None:
    """Record a Shop's phase (``None``: the Shop is gone) and update the gauge."""
    if phase is None:
        _phases.pop(uid, None)
    else:
        _phases[uid] = phase
    counts = {p: 0 for p in PHASES}
    for p in _phases.values():
        counts[p] = counts.get(p, 0) + 1
    for p, n in counts.items():
        SHOPS.labels(p).set(n)


def result_label(succeeded: bool, paused: bool) -> str:
    return "paused" if paused and succeeded else "success" if succeeded else "failure"


class DriftTracker:
    """Remembers, per object, what the operator applied and the version the API server answered.

    A later apply of the same rendered object that answers with another version means the object
    was changed in between by someone else (``metadata.generation`` for objects that have it, so
    status updates do not count; else ``resourceVersion``; a new ``uid``: deleted and re-created),
    and this apply repaired it.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
        meta = obj.get("metadata") or {}
        return (str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("namespace") or ""),
                str(meta.get("name")))

    @staticmethod
    def _version(live: Mapping[str, Any]) -> str:
        meta = live.get("metadata") or {}
        version = meta.get("generation") or meta.get("resourceVersion")
        return f"{meta.get('uid')}/{version}" if version else ""

    def applied(self, obj: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
        """Record an apply; True when it repaired drift."""
        if not isinstance(live, Mapping):
            return False
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
        key = self._key(obj)
        version = self._version(live)
        before = self._last.get(key)
        self._last[key] = (digest, version)
        repaired = before is not None and before[0] == digest and bool(version) and before[1] != version
        if repaired:
            DRIFT_REPAIRS.inc()
        return repaired

    def forget(self, namespace: str) -> None:
        for key in [k for k in self._last if k[2] == namespace]:
            del self._last[key]


def metrics_port(environ: Mapping[str, str] | None = None) -> int | None:
    raw = (os.environ if environ is None else environ).get("MICROSHOP_OPERATOR_METRICS_PORT", str(DEFAULT_PORT))
    raw = raw.strip()
    if not raw or raw == "0":
        return None
    return int(raw)


_server: Any = None


def serve(port: int | None = None, registry: CollectorRegistry = REGISTRY) -> int | None:
    """Start the ``/metrics`` HTTP server once (a thread of prometheus_client); returns its port."""
    global _server
    port = metrics_port() if port is None else port
    if port is None or _server is not None:
        return port
    try:
        _server, _ = start_http_server(port, addr=os.environ.get("MICROSHOP_OPERATOR_METRICS_ADDR", "0.0.0.0"),
                                       registry=registry)
    except OSError as exc:  # metrics are not worth a crash loop: the operator runs on without them
        log.warning("cannot serve metrics on :%d (%s); running without /metrics", port, exc)
        return None
    log.info("metrics on :%d/metrics", port)
    return port
