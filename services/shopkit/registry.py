"""The shop's services, in one place: what each is called, where it listens, who may call it, what it uses.

Everything that needs the list of services reads it from here or from a file generated from it
(``python -m devtools.generate``, ``make generate``; a test fails when a generated file is stale):

- the chart's ``files/topology.yaml`` (ports, callers, infrastructure, RabbitMQ permissions), its
  ``values.yaml`` services section and ``values.schema.json``, and from those the operator's CRD;
- the operator (it reads the chart's topology file), the gateway (upstreams, prefixes, their default
  URLs), ``devtools/shop.py`` (``make dev`` and the integration tests), the compose files.

What a service consumes and publishes is not written here: its app's ``EventBus`` declares it, and the
generator reads it from there (so this module imports no service). Adding a service: its package plus
one entry below (docs/architecture.md, "Adding a service").
"""

from __future__ import annotations

from dataclasses import dataclass, field

MONGODB = "mongodb"
REDIS = "redis"
RABBITMQ = "rabbitmq"
INFRASTRUCTURE = (MONGODB, REDIS, RABBITMQ)


@dataclass(frozen=True)
class Service:
    """One service of the shop."""

    name: str
    # Its HTTP port (the default of its settings, the chart's container port, the dev runner's port).
    port: int
    # Which managed infrastructure it connects to (its NetworkPolicies, its own database/broker user).
    infra: tuple[str, ...] = ()
    # First path segments under /api that the gateway forwards to it (``/api/auth/...`` → customers).
    prefixes: tuple[str, ...] = ()
    # Services that call it over HTTP (NetworkPolicies admit exactly these; the gateway calls every
    # service that has prefixes).
    callers: tuple[str, ...] = ()
    # The shop's entry point: its NetworkPolicy admits any client.
    public: bool = False
    # `make dev` and compose start services in waves: wave 0 (the pure consumers and customers, which
    # serves the JWKS) is up, with its queues bound, before anything publishes.
    wave: int = 1
    # The chart's default sizing (values.yaml): memory limit and the autoscaler's maximum.
    memory_limit: str = "256Mi"
    max_replicas: int = 3
    # A note beside the memory limit in values.yaml.
    memory_note: str = ""
    module: str = field(default="")

    @property
    def package(self) -> str:
        """The importable package (``python -m <package>`` starts it)."""
        return self.module or self.name

    @property
    def on_bus(self) -> bool:
        return RABBITMQ in self.infra

    def uses(self, kind: str) -> bool:
        return kind in self.infra


SERVICES: tuple[Service, ...] = (
    Service("customers", 8001, infra=(MONGODB, REDIS), prefixes=("auth", "customers"),
            callers=("gateway", "products", "orders", "alerts", "analytics"), wave=0,
            memory_limit="320Mi", memory_note="# >= passwordHashing concurrency x memoryKiB + baseline"),
    Service("products", 8002, infra=(MONGODB, REDIS, RABBITMQ), prefixes=("products",),
            callers=("gateway", "orders")),
    Service("orders", 8003, infra=(MONGODB, RABBITMQ), prefixes=("orders",), callers=("gateway",)),
    Service("alerts", 8004, infra=(MONGODB, REDIS, RABBITMQ), prefixes=("alerts",), callers=("gateway",),
            wave=0),
    Service("analytics", 8005, infra=(MONGODB, REDIS, RABBITMQ), prefixes=("analytics",),
            callers=("gateway",), wave=0),
    Service("gateway", 8000, infra=(REDIS,), public=True, max_replicas=5),
)


def names(services: tuple[Service, ...] = SERVICES) -> tuple[str, ...]:
    return tuple(s.name for s in services)


def get(name: str, services: tuple[Service, ...] = SERVICES) -> Service:
    for service in services:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r} (known: {', '.join(names(services))})")


def chart_order(services: tuple[Service, ...] = SERVICES) -> tuple[Service, ...]:
    """The entry point first, then the others in registry order (the order of the chart's values)."""
    return tuple(sorted(services, key=lambda s: not s.public))


def upstreams(services: tuple[Service, ...] = SERVICES) -> tuple[Service, ...]:
    """The services the gateway forwards to (those with public path prefixes), in registry order."""
    return tuple(s for s in services if s.prefixes)


def prefix_to_service(services: tuple[Service, ...] = SERVICES) -> dict[str, str]:
    """First path segment under /api → the service owning it."""
    return {prefix: s.name for s in services for prefix in s.prefixes}


def on_bus(services: tuple[Service, ...] = SERVICES) -> tuple[Service, ...]:
    """The services with an event bus (they connect to RabbitMQ), in registry order."""
    return tuple(s for s in services if s.on_bus)


def users_of(kind: str, services: tuple[Service, ...] = SERVICES) -> tuple[str, ...]:
    """The services that use one kind of managed infrastructure, sorted (each has its own user there)."""
    return tuple(sorted(s.name for s in services if s.uses(kind)))
