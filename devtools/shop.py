"""The whole shop as local processes: SecantusDB, then customers, the other services, the gateway.

``make dev`` (devtools.run) and the integration tests both use :class:`LocalShop`, so the
processes the tests exercise are started exactly as a developer's are.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devtools.procs import Proc, ProcGroup, free_port
from devtools.secantus import SERVICE_ENV as SECANTUS_SERVICE_ENV
from devtools.secantus import mongo_url, port_of, secantus_proc, wait_secantus
from shopkit import registry

DEV_ADMIN_EMAIL = "admin@example.com"
DEV_ADMIN_PASSWORD = "microshop-dev-admin"  # noqa: S105 - documented dev-only default


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    port: int
    # Started in waves: the pure consumers (and customers, which serves the JWKS) are up, with their
    # queues bound, before anything publishes; so the demo catalog's events reach every consumer.
    wave: int

    @property
    def available(self) -> bool:
        # Only a package with a __main__ can be started (python -m <module>); every service has one today.
        find = importlib.util.find_spec
        return find(self.module) is not None and find(f"{self.module}.__main__") is not None


# The registry's services (shopkit.registry), in its order: customers, products, orders, alerts, analytics,
# then the gateway.
SERVICES: tuple[ServiceSpec, ...] = tuple(
    ServiceSpec(s.name, s.package, s.port, wave=s.wave) for s in registry.SERVICES)


def ensure_private_key(path: Path) -> Path:
    """A dev signing key, kept across runs so issued tokens stay valid after a restart."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return path


@dataclass
class LocalShop:
    """Start, stop, kill and restart the shop's processes; ports are fixed (dev) or free ones (tests)."""

    key_file: Path
    mongo: str | None = None  # an external MongoDB URL; else a SecantusDB process is started
    mongo_storage: str = ":memory:"
    namespace: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra MICROSHOP_* for every service
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)  # per service
    services: list[str] | None = None  # default: every service (a subset runs a partial shop, e.g. without the gateway)
    out: IO[str] | None = sys.stdout
    group: ProcGroup = field(init=False)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.group = ProcGroup(out=self.out)
        if self.services is None:
            self.services = [s.name for s in SERVICES if s.available]

    @property
    def specs(self) -> list[ServiceSpec]:
        assert self.services is not None
        return [s for s in SERVICES if s.name in self.services]

    def port(self, name: str) -> int:
        return self.ports[name]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def common_env(self) -> dict[str, str]:
        assert self.mongo is not None
        env = {
            "MICROSHOP_MONGO_URL": self.mongo,
            "MICROSHOP_NAMESPACE": self.namespace,
            "MICROSHOP_JWKS_URL": f"{self.url('customers')}/auth/jwks",
            "MICROSHOP_JWT_PRIVATE_KEY_FILE": str(self.key_file),
            "MICROSHOP_ADMIN_EMAIL": DEV_ADMIN_EMAIL,
            "MICROSHOP_ADMIN_PASSWORD": DEV_ADMIN_PASSWORD,
            **SECANTUS_SERVICE_ENV,  # the shop's database is SecantusDB (an external real MongoDB: override it)
        }
        for spec in SERVICES:
            env[f"MICROSHOP_{spec.name.upper()}_URL"] = self.url(spec.name)
        env.update(self.env)
        return env

    def proc_for(self, name: str, *, port: int | None = None, label: str | None = None) -> Proc:
        """Service ``name``'s process; another ``port`` makes a replica (behind a balancer on the service's port)."""
        spec = next(s for s in SERVICES if s.name == name)
        port = port or self.ports[name]
        env = {**self.common_env(), "MICROSHOP_PORT": str(port), **self.service_env.get(name, {})}
        return Proc(
            name=label or name,
            argv=[sys.executable, "-m", spec.module],
            env=env,
            ready_url=f"http://127.0.0.1:{port}/health/ready",
        )

    def start(self, timeout: float = 60.0) -> LocalShop:
        for spec in SERVICES:
            self.ports.setdefault(spec.name, free_port())
        self.start_database()
        for wave in sorted({spec.wave for spec in self.specs}):
            specs = [spec for spec in self.specs if spec.wave == wave]
            for spec in specs:
                self.start_service(spec.name, wait=False)
            for spec in specs:
                self.procs[spec.name].wait_ready(timeout)
        return self

    def start_database(self) -> None:
        """A SecantusDB process, unless an external MongoDB was given."""
        if self.mongo is None:
            db = self.group.add(secantus_proc(storage=self.mongo_storage)).start()
            self.procs["mongo"] = db
            wait_secantus(db)
            self.mongo = mongo_url(port_of(db))

    def start_service(self, name: str, *, wait: bool = True, timeout: float = 60.0) -> Proc:
        old = self.procs.get(name)
        proc = self.proc_for(name)
        if old is not None and old in self.group.procs:
            self.group.procs.remove(old)
        self.group.add(proc).start()
        self.procs[name] = proc
        if wait:
            proc.wait_ready(timeout)
        return proc

    def stop_service(self, name: str) -> None:
        self.procs[name].stop()

    def kill_service(self, name: str) -> None:
        self.procs[name].kill()

    def stop(self) -> None:
        """Stop the services first (each finishes its requests and deliveries and its outbox relay's last round,
        which needs the database), then the SecantusDB this shop started."""
        self.group.stop_all(last=[self.procs["mongo"]] if "mongo" in self.procs else [])


def shop_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The MICROSHOP_* variables of ``environ`` (to pass a user's configuration through)."""
    return {k: v for k, v in environ.items() if k.startswith("MICROSHOP_")}
