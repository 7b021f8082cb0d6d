"""Make sure RabbitMQ and Redis answer on this machine: start them if installed, install them if not.

``ensure_installed(HAPROXY)`` installs haproxy (Debian package ``haproxy``) for the rolling-restart test
(tests/integration/test_rolling_restart.py), which runs its own instances.

``--prometheus`` also makes sure the ``prometheus`` binary is installed (Debian package ``prometheus``)
for ``make dev ARGS=--prometheus`` and tests/integration/test_prometheus.py; CI (.ci/run) passes it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Infra:
    name: str
    port: int
    binary: str
    package: str
    start: tuple[str, ...]
    wait_seconds: float


RABBITMQ = Infra("RabbitMQ", 5672, "rabbitmq-server", "rabbitmq-server", ("rabbitmq-server", "-detached"), 60)
REDIS = Infra(
    "Redis", 6379, "redis-server", "redis-server",
    ("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
     "--save", "", "--appendonly", "no"),
    10,
)


def say(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def reachable(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, seconds: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable(port, host):
            return True
        time.sleep(0.25)
    return False


def _sudo() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    return []


def install(infra: Infra) -> bool:
    if not shutil.which("apt-get"):
        say(f"{infra.name} is not installed and this is not a Debian/Ubuntu machine: install "
            f"'{infra.package}' with your package manager and run it on 127.0.0.1:{infra.port}.")
        return False
    if os.geteuid() != 0 and not shutil.which("sudo"):
        say(f"{infra.name} is not installed. Run: apt-get install -y {infra.package} (as root).")
        return False
    say(f"{infra.name} is not installed: installing Debian package '{infra.package}' (apt-get) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run([*_sudo(), "apt-get", "update", "-q"], check=True, env=env)
        subprocess.run([*_sudo(), "apt-get", "install", "-y", "-q", "--no-install-recommends", infra.package],
                       check=True, env=env)
    except subprocess.CalledProcessError as exc:
        say(f"installing {infra.package} failed ({exc}); install it by hand: apt-get install -y {infra.package}")
        return False
    return True


def ensure(infra: Infra, *, allow_install: bool = True) -> bool:
    if reachable(infra.port):
        return True
    say(f"{infra.name} is not answering on 127.0.0.1:{infra.port}.")
    if not shutil.which(infra.binary) and not (allow_install and install(infra)):
        return False
    say(f"starting {infra.name}: {' '.join(infra.start)}")
    subprocess.run([*_sudo(), *infra.start], check=False, stdout=subprocess.DEVNULL)
    if wait_for_port(infra.port, infra.wait_seconds):
        say(f"{infra.name} is up on 127.0.0.1:{infra.port}.")
        return True
    say(f"{infra.name} did not come up within {infra.wait_seconds:.0f}s; see its log "
        f"(journalctl or /var/log/{infra.binary.split('-')[0]}/).")
    return False


PROMETHEUS = Infra("Prometheus", 9090, "prometheus", "prometheus", (), 0)
# The stand-in for a Kubernetes Service: in front of a RabbitMQ cluster (devtools.rabbitmq_cluster) and of each
# service's replicas (the rolling-restart test); never started here.
HAPROXY = Infra("haproxy", 0, "haproxy", "haproxy", (), 0)


def ensure_installed(infra: Infra, *, allow_install: bool = True) -> bool:
    """``infra``'s binary is on PATH, installed (Debian package) when it is not; nothing is started."""
    return bool(shutil.which(infra.binary)) or (allow_install and install(infra) and bool(shutil.which(infra.binary)))


def ensure_prometheus(*, allow_install: bool = True) -> bool:
    """The prometheus binary is installed (not run: devtools.prometheus starts its own on demand)."""
    if shutil.which(PROMETHEUS.binary):
        return True
    if not (allow_install and install(PROMETHEUS)):
        return False
    # On a systemd machine the package starts its own service on :9090: stop it, `make dev` runs its own.
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        for unit in ("prometheus", "prometheus-node-exporter"):
            subprocess.run([*_sudo(), "systemctl", "disable", "--now", unit], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which(PROMETHEUS.binary) is not None


def ensure_all(*, allow_install: bool = True) -> bool:
    results = [ensure(i, allow_install=allow_install) for i in (RABBITMQ, REDIS)]
    return all(results)


if __name__ == "__main__":
    allow = "--no-install" not in sys.argv
    ok = ensure_all(allow_install=allow)
    if "--prometheus" in sys.argv:
        ok = ensure_prometheus(allow_install=allow) and ok
    sys.exit(0 if ok else 1)
