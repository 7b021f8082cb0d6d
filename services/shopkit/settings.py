"""Settings read from ``MICROSHOP_*`` environment variables.

Every service subclasses :class:`ServiceSettings`; the variable names are the same
in the chart, the dev runner and the README's configuration table.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopkit import registry

S = TypeVar("S", bound="ServiceSettings")
# How documents past their retention are deleted (shopkit.mongo.Retention): by MongoDB's TTL index, or by
# the service's own sweep (for SecantusDB, whose TTL sweeper holds back WiredTiger's cleanup).
ExpiryMode = Literal["ttl-index", "sweep"]


class ServiceSettings(BaseSettings):
    """What every service reads. Defaults suit a developer machine."""

    model_config = SettingsConfigDict(env_prefix="MICROSHOP_", extra="ignore", frozen=True)

    service_name: str = "microshop"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    # Infrastructure (one database per service: the name defaults to the service's own).
    mongo_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    mongo_database: str | None = None
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    # Prefix for exchange, queue and Redis key names, so a test run or a second shop can share a broker and a Redis.
    namespace: str = ""

    # JWT verification (every service verifies tokens itself).
    jwt_issuer: str = "microshop"
    jwt_audience: str = "microshop-api"
    jwks_url: str = f"http://127.0.0.1:{registry.get('customers').port}/auth/jwks"
    jwks_cache_seconds: int = Field(default=300, ge=1)
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=300)

    # Group commit (shopkit.batching): event consumers and orders' placements write up to
    # ``batch_max_size`` items per transaction. An item arriving while nothing commits is written at
    # once; items arriving during a commit go out together right after it; only when arrivals are dense
    # does a first item wait, at most ``batch_linger_ms``, for company.
    batch_max_size: int = Field(default=64, ge=1, le=1000)
    batch_linger_ms: float = Field(default=20.0, ge=0, le=1000)
    # How long the outbox keeps a record after its publish was confirmed (for inspection); 0 deletes
    # it (within a second, several together), which is also the cheapest for the database.
    outbox_retention_seconds: float = Field(default=0, ge=0, le=7 * 86400)
    # How long an outbox relay holds the records it claimed for publishing; a replica that dies holding
    # a claim delays those records this long (then another relay takes them over). Replicas' clocks must
    # agree far better than this.
    outbox_lease_seconds: float = Field(default=10, ge=1, le=600)
    # How long a consumer remembers that it handled an event (its handled-event marker, a TTL index): a
    # redelivery within that time is recognised as a duplicate. Far longer than anything stays in flight.
    handled_event_retention_seconds: float = Field(default=7 * 86400, ge=60, le=365 * 86400)
    # Who deletes expired documents (markers, customers' refresh tokens and families): ``ttl-index``,
    # MongoDB through a TTL index (the chart's default); ``sweep``, the service itself every
    # ``mongo_expiry_sweep_seconds`` (jittered) through a plain index on the same field. Everything that
    # starts SecantusDB for the shop sets ``sweep``: SecantusDB's TTL sweeper keeps WiredTiger from
    # discarding old versions between its sweeps (docs/saga.md, "Steady over time").
    mongo_expiry: ExpiryMode = "ttl-index"
    mongo_expiry_sweep_seconds: float = Field(default=60.0, ge=1, le=86400)
    # A database statement slower than this is logged (a WARNING naming the command, the collection and the
    # time; never the statement's documents); 0 logs none.
    mongo_slow_statement_ms: float = Field(default=1000.0, ge=0, le=600_000)
    # How the processes of one service share each of its consumer queues (docs/saga.md, "Replicas"):
    # ``single-active``: one process consumes a queue at a time (RabbitMQ's single active consumer), the
    # others are hot standbys that take over when it goes away, so batches stay full and replicas never
    # write the same documents concurrently; ``shared``: every process consumes (competing consumers,
    # RabbitMQ round-robins the deliveries). A queue keeps the mode it was created with (the bus logs how
    # to migrate it).
    consumers: Literal["single-active", "shared"] = "single-active"

    # Shutdown (docs/kubernetes.md, "Shutdown and rolling restarts"): on SIGTERM readiness fails at once and
    # the listener stays open ``shutdown_drain_seconds`` more, while load balancers notice (0 under Kubernetes:
    # the chart's preStop delay does that before the signal); then requests in flight get
    # ``shutdown_timeout_seconds`` to finish.
    shutdown_drain_seconds: float = Field(default=0, ge=0, le=120)
    shutdown_timeout_seconds: int = Field(default=10, ge=1, le=300)

    # Python's garbage collector (shopkit.serve.tune_gc): once the app is built, what exists is frozen (never
    # scanned again) and a young collection runs every ``gc_young_threshold`` allocations instead of Python's
    # 700, the older generations every 20 of the younger. 0 keeps Python's defaults. docs/saga.md, "Garbage
    # collection", has the measurements.
    gc_young_threshold: int = Field(default=200_000, ge=0, le=10_000_000)

    # Observability (docs/observability.md): ``/metrics`` on the service's own port, traces over OTLP/HTTP.
    metrics_enabled: bool = True
    # How often a consuming service counts its dead letters and the unroutable events for /metrics
    # (``microshop_dead_letters``, ``microshop_unroutable_events``; one passive queue.declare each).
    dead_letter_poll_seconds: float = Field(default=30.0, ge=0.5, le=3600)
    # The OTLP/HTTP base URL of a collector (``http://otel-collector:4318``); tracing is off without it
    # (the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read when this is unset).
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1)

    @property
    def database_name(self) -> str:
        return self.mongo_database or self.service_name

    @classmethod
    def of(cls: type[S], settings: ServiceSettings | None) -> S:
        """``settings`` when they are this service's, else this service's read from the environment.

        Tests hand a service the kit's base settings; a service reads its own type then.
        """
        return settings if isinstance(settings, cls) else cls()


@lru_cache
def get_settings(cls: type[S]) -> S:
    """Settings are read once per process (per settings class)."""
    return cls()
