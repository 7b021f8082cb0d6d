"""Operator settings from the environment, read once.

* ``MICROSHOP_OPERATOR_CHART``: the shop chart to render. Default: ``charts/microshop`` of this
  checkout when there is one, else ``/opt/microshop/charts/microshop`` (the operator image).
* ``MICROSHOP_OPERATOR_HELM``: the helm binary. Default: ``helm`` on PATH, else the pinned helm of
  ``devtools.helm`` (only when running from a checkout).
* ``MICROSHOP_OPERATOR_RESYNC_SECONDS`` (30): how often each Shop is re-applied (drift repair) and
  its status refreshed.
* ``MICROSHOP_OPERATOR_BACKOFF_SECONDS`` (5) / ``MICROSHOP_OPERATOR_BACKOFF_MAX_SECONDS`` (300):
  first retry delay after a failure, doubling up to the maximum.
* ``MICROSHOP_OPERATOR_HELM_TIMEOUT_SECONDS`` (60): a ``helm template`` run taking longer fails.
* ``MICROSHOP_OPERATOR_LIVENESS`` (``http://0.0.0.0:8080/healthz``): liveness endpoint when no
  ``--liveness`` flag is given; empty disables it.
* ``MICROSHOP_OPERATOR_METRICS_PORT`` (8081; empty or 0 disables): Prometheus ``/metrics``
  (:mod:`microshop_operator.metrics`), a port of its own apart from the liveness endpoint.
* ``MICROSHOP_OPERATOR_LEADER_ELECTION`` (empty: off): the name of the ``coordination.k8s.io`` Lease
  that replicas compete for; only its holder runs handlers (see :mod:`microshop_operator.leader`).
  ``MICROSHOP_OPERATOR_LEASE_NAMESPACE`` (default ``$POD_NAMESPACE``) is where the Lease lives,
  ``POD_NAME`` (default host name and pid) the identity of this replica.
* ``MICROSHOP_OPERATOR_LEASE_DURATION_SECONDS`` (15), ``..._RENEW_DEADLINE_SECONDS`` (10),
  ``..._RETRY_PERIOD_SECONDS`` (2): client-go's leader-election timings. A standby takes over at most
  lease duration + 2 x retry period after the holder's last renewal; a holder that cannot renew for
  the renew deadline stops itself (deadline < duration, so two never act at once).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

GROUP = "microshop.dev"
VERSION = "v1alpha1"
PLURAL = "shops"
KIND = "Shop"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels on everything the operator applies; pruning and PVC clean-up select by them.
SHOP_LABEL = "microshop.dev/shop"
MANAGED_BY = "microshop-operator"

_CHECKOUT_ROOT = Path(__file__).resolve().parents[2]
_IMAGE_CHART = Path("/opt/microshop/charts/microshop")


class ConfigError(RuntimeError):
    """The operator cannot run as configured (e.g. no helm binary)."""


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def default_chart() -> Path:
    in_checkout = _CHECKOUT_ROOT / "charts" / "microshop"
    return in_checkout if (in_checkout / "Chart.yaml").is_file() else _IMAGE_CHART


def find_helm() -> str:
    """``$MICROSHOP_OPERATOR_HELM``, else ``helm`` on PATH, else devtools' pinned helm in a checkout."""
    configured = os.environ.get("MICROSHOP_OPERATOR_HELM", "").strip()
    if configured:
        return configured
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    if not (_CHECKOUT_ROOT / "devtools" / "helm.py").is_file():
        raise ConfigError("no helm binary: put helm on PATH or set MICROSHOP_OPERATOR_HELM")
    # A checkout: its pinned helm, installed on first use. A process of its own, not an import: the
    # operator never imports dev tooling (make lint checks it).
    found = subprocess.run([sys.executable, "-m", "devtools.helm"], cwd=_CHECKOUT_ROOT, capture_output=True,
                           text=True, check=False)
    if found.returncode != 0:
        raise ConfigError(f"no helm binary: {found.stderr.strip()}")
    return found.stdout.strip()


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    duration: float
    renew_deadline: float
    retry_period: float


def lease_config() -> LeaseConfig | None:
    """The leader-election settings; None when ``MICROSHOP_OPERATOR_LEADER_ELECTION`` is empty."""
    name = os.environ.get("MICROSHOP_OPERATOR_LEADER_ELECTION", "").strip()
    if not name:
        return None
    namespace = (os.environ.get("MICROSHOP_OPERATOR_LEASE_NAMESPACE", "").strip()
                 or os.environ.get("POD_NAMESPACE", "").strip())
    if not namespace:
        raise ConfigError("MICROSHOP_OPERATOR_LEADER_ELECTION needs MICROSHOP_OPERATOR_LEASE_NAMESPACE "
                          "or POD_NAMESPACE")
    identity = os.environ.get("POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaseConfig(
        name=name, namespace=namespace, identity=identity,
        duration=_float_env("MICROSHOP_OPERATOR_LEASE_DURATION_SECONDS", 15.0),
        renew_deadline=_float_env("MICROSHOP_OPERATOR_RENEW_DEADLINE_SECONDS", 10.0),
        retry_period=_float_env("MICROSHOP_OPERATOR_RETRY_PERIOD_SECONDS", 2.0),
    )
    if not lease.retry_period < lease.renew_deadline < lease.duration:
        raise ConfigError("leader election needs retry period < renew deadline < lease duration "
                          f"(got {lease.retry_period}, {lease.renew_deadline}, {lease.duration})")
    return lease


@dataclass(frozen=True)
class OperatorConfig:
    chart: Path
    helm: str
    resync_seconds: float
    backoff_seconds: float
    backoff_max_seconds: float
    helm_timeout_seconds: float

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0-based): exponential, capped."""
        return float(min(self.backoff_seconds * (2 ** min(retry, 16)), self.backoff_max_seconds))


@lru_cache(maxsize=1)
def get_config() -> OperatorConfig:
    chart = Path(os.environ.get("MICROSHOP_OPERATOR_CHART", "").strip() or default_chart())
    return OperatorConfig(
        chart=chart,
        helm=find_helm(),
        resync_seconds=_float_env("MICROSHOP_OPERATOR_RESYNC_SECONDS", 30.0),
        backoff_seconds=_float_env("MICROSHOP_OPERATOR_BACKOFF_SECONDS", 5.0),
        backoff_max_seconds=_float_env("MICROSHOP_OPERATOR_BACKOFF_MAX_SECONDS", 300.0),
        helm_timeout_seconds=_float_env("MICROSHOP_OPERATOR_HELM_TIMEOUT_SECONDS", 60.0),
    )


def resync_seconds() -> float:
    """Read at import time by the timer decorator, before the rest of the config is needed."""
    return _float_env("MICROSHOP_OPERATOR_RESYNC_SECONDS", 30.0)
