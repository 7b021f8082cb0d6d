"""``Service``: the one place a microshop service is assembled.

A service names what it connects to (``Uses``), a ``build`` that yields its dependencies object once
those are connected, its routes and the events it publishes and consumes; the kit adds logging, request
ids, auth, problem+json errors, health, OpenAPI, metrics and tracing. Consumers start after ``build``
(a first delivery finds every dependency) and stop before it tears down; the outbox relay publishes
what is left before the connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import typing
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from shopkit import mongo, tracing
from shopkit.auth import AuthMiddleware, RejectInvalidTokenMiddleware, TokenVerifier, provide_principal
from shopkit.contracts.events import EventData
from shopkit.errors import EXCEPTION_HANDLERS
from shopkit.health import HEALTH_HANDLERS, ReadinessCheck
from shopkit.logging import configure_logging
from shopkit.messaging.bus import BatchHandler, EventBus, create_broker
from shopkit.messaging.deadletters import DeadLetters, count_dead_letters, dead_letter_controller
from shopkit.messaging.lifecycle import start_consuming, try_connect, try_start
from shopkit.messaging.outbox import OutboxRelay, ensure_outbox_indexes
from shopkit.metrics import (
    MetricsController,
    RouteLabel,
    http_metrics,
    route_template,
)
from shopkit.redis import create_redis
from shopkit.requestid import RequestIdMiddleware
from shopkit.settings import ServiceSettings
from shopkit.swagger import swagger_routes
from shopkit.tasks import cancel

log = logging.getLogger("shopkit.app")

D = TypeVar("D")
P = TypeVar("P", bound=EventData)
S = TypeVar("S", bound=ServiceSettings)


@dataclass
class Resources(Generic[S]):
    """The connections of a running service, handed to its ``build``: one name each.

    ``client``, ``db``, ``documents``, ``redis`` and ``outbox`` are there when the service declared
    them in ``Uses``; asking for one it did not declare fails loudly.
    """

    settings: S
    bus: EventBus | None = None
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)  # checks reported as degraded, never failing readiness
    broker_connected: bool = False
    _client: AsyncMongoClient[Any] | None = None
    _documents: mongo.Documents | None = None
    _redis: Redis | None = None
    _outbox: OutboxRelay | None = None
    _retention: mongo.Retention | None = None

    @property
    def client(self) -> AsyncMongoClient[Any]:
        assert self._client is not None, "this service does not use MongoDB"
        return self._client

    @property
    def db(self) -> AsyncDatabase[Any]:
        return self.client[self.settings.database_name]

    @property
    def documents(self) -> mongo.Documents:
        assert self._documents is not None, "this service does not use MongoDB"
        return self._documents

    @property
    def retention(self) -> mongo.Retention:
        """Declares what expires in this service's database (``MICROSHOP_MONGO_EXPIRY`` says who deletes it)."""
        assert self._retention is not None, "this service does not use MongoDB"
        return self._retention

    @property
    def redis(self) -> Redis:
        assert self._redis is not None, "this service does not use Redis"
        return self._redis

    @property
    def outbox(self) -> OutboxRelay:
        assert self._outbox is not None, "this service has no outbox"
        return self._outbox


Build = Callable[[Resources[S]], AsyncIterator[D]]
"""An async generator: set up what the service needs, yield its dependencies object, tear down after."""

@dataclass(frozen=True)
class Consume(Generic[D]):
    """A consumer with options: ``hold`` seconds a batch's first event always waits for company
    (``shopkit.batching``), for consumers nobody waits on; ``only`` the values of a type routed by a
    payload field (``EventData.ROUTED_BY``) its queue is bound to (``EventBus.subscribe``)."""

    pick: Callable[[D], BatchHandler[Any]]
    hold: float = 0.0
    only: frozenset[str] | None = None


Consumers = Mapping[Any, Callable[[D], BatchHandler[Any]] | Consume[D]]
"""Event model(s) → the handler of a batch of such events, picked from the dependencies object."""


@dataclass(frozen=True)
class Uses:
    """What a service connects to.

    ``ready_without`` names the resources (``"mongo"``, ``"redis"``, ``"broker"``) the service keeps
    serving without: their checks still run and show in ``/health/ready`` (and the gateway's
    ``/api/health``) as ``degraded``, but never make the service unready. A service ready without the
    broker also starts without it: it connects (and starts its consumers) in the background, with
    backoff, while its outbox keeps the events it writes meanwhile.
    """

    mongo: bool = True
    redis: bool = False
    events: bool = False
    outbox: bool = False
    ready_without: frozenset[str] = frozenset()

    def infrastructure(self) -> list[str]:
        """What this service connects to; the chart's NetworkPolicies are tested against it."""
        used = (("mongodb", self.mongo), ("redis", self.redis), ("rabbitmq", self.events))
        return sorted(name for name, on in used if on)


@contextlib.asynccontextmanager
async def connect(settings: S, uses: Uses, bus: EventBus | None) -> AsyncIterator[Resources[S]]:
    """Connect what ``uses`` names, register each readiness check, and close everything on exit."""
    res = Resources(settings=settings, bus=bus)
    async with contextlib.AsyncExitStack() as stack:
        if uses.mongo:
            client = res._client = mongo.create_client(settings)
            stack.push_async_callback(client.close)
            res._documents = mongo.create_documents(client, settings)
            res.checks["mongo"] = lambda: mongo.ping(client)
            retention = res._retention = mongo.Retention(res.db, settings.mongo_expiry,
                                                         settings.mongo_expiry_sweep_seconds)
            stack.push_async_callback(retention.stop)
        if uses.redis:
            redis = res._redis = create_redis(settings)
            stack.push_async_callback(redis.aclose)
            res.checks["redis"] = redis.ping
        if uses.mongo and bus is not None and bus.subscriptions:
            await mongo.ensure_marker_retention(res.retention, settings.handled_event_retention_seconds)
        if bus is not None:
            if "broker" in uses.ready_without:
                res.broker_connected = await try_connect(bus)  # else the lifespan keeps trying in the background
            else:
                await bus.connect()
                res.broker_connected = True
            stack.push_async_callback(bus.stop)
            res.checks["broker"] = lambda: bus.broker.ping(timeout=2.0)
        if uses.outbox:
            assert bus is not None, "the outbox needs events"
            await ensure_outbox_indexes(res.db)
            relay = res._outbox = OutboxRelay(res.db, bus, retention_seconds=settings.outbox_retention_seconds,
                                              lease_seconds=settings.outbox_lease_seconds)
            relay.start()
            stack.push_async_callback(relay.stop)
        res.optional = set(uses.ready_without) & set(res.checks)
        yield res


class Service(Generic[S, D]):
    """A service's declaration; :meth:`app` builds its Litestar app.

    ``settings`` may be ``None`` or the kit's base settings (tests pass those): the service's
    own ``settings_type`` is then read from the environment. The dependencies type is what
    ``build`` yields (its return annotation, ``AsyncIterator[Deps]``).
    """

    def __init__(
        self,
        settings_type: type[S],
        settings: ServiceSettings | None,
        *,
        build: Build[S, D],
        routes: Sequence[ControllerRouterHandler],
        consumes: Consumers[D] | None = None,
        publishes: Sequence[type[EventData]] = (),
        uses: Uses = Uses(),
        title: str,
        description: str,
        verifier: TokenVerifier | None = None,
        middleware: Sequence[DefineMiddleware] = (),
        defer_auth_rejection: bool = False,
        route_label: RouteLabel | None = None,
    ) -> None:
        self.settings: S = settings_type.of(settings)
        configure_logging(self.settings.service_name, self.settings.log_level, self.settings.log_format)
        # Before the broker is created: its telemetry middleware needs the tracer provider.
        tracing.setup_tracing(self.settings.service_name, self.settings.otlp_endpoint,
                              self.settings.trace_sample_ratio)
        self.route_label = route_label
        self.title = title
        self.description = description
        self.routes = list(routes)
        self.build = contextlib.asynccontextmanager(build)
        self.deps_type: type[D] = typing.get_type_hints(build)["return"].__args__[0]
        self.uses = uses
        self.verifier = verifier or TokenVerifier(self.settings)
        self.middleware = list(middleware)
        self.defer_auth_rejection = defer_auth_rejection
        self.bus = (EventBus(self.settings, create_broker(self.settings), publishes=tuple(publishes))
                    if uses.events else None)
        # Its consumers' dead-letter queues (``shopkit.messaging.deadletters``): admin routes and gauges.
        self.dead_letters = (DeadLetters(self.settings.rabbitmq_url.get_secret_value(), self.settings.namespace)
                             if uses.events else None)
        self._deps: D | None = None
        self._checks: dict[str, ReadinessCheck] = {}
        self._optional_checks: set[str] = set()
        for model, how in (consumes or {}).items():
            if isinstance(how, Consume):
                self._consume(model, how.pick, hold=how.hold, only=how.only)
            else:
                self._consume(model, how)

    @property
    def deps(self) -> D:
        if self._deps is None:
            raise RuntimeError(f"{self.settings.service_name} is not started")
        return self._deps

    def _consume(self, models: type[EventData] | tuple[type[EventData], ...],
                pick: Callable[[D], BatchHandler[Any]], *, max_batch: int | None = None,
                linger: float | None = None, hold: float = 0.0, only: frozenset[str] | None = None) -> None:
        """Subscribe to each model's event type; batches go to ``pick(deps)`` once the service runs.

        Several models share their batches: a batch may then hold events of each type (in arrival
        order), and one transaction serves them all. ``hold`` (seconds): how long a batch's first
        event always waits for company (``shopkit.batching``), for consumers nobody waits on.
        """
        assert self.bus is not None, "declare uses=Uses(events=True) to consume events"
        group = models if isinstance(models, tuple) else (models,)

        async def handle(batch: Sequence[Any]) -> None:
            await pick(self.deps)(batch)

        name = f"{self.settings.service_name}.{'+'.join(m.TYPE for m in group)}"
        handle.__name__ = name.replace(".", "_").replace("+", "_")
        batcher = self.bus.batcher(handle, max_batch=max_batch, linger=linger, hold=hold, name=name)
        for model in group:
            self.bus.subscribe(model, handle, batcher=batcher, only=only)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Litestar) -> AsyncIterator[None]:
        async with connect(self.settings, self.uses, self.bus) as res, self.build(res) as deps:
            self._deps = deps
            self._checks.update(res.checks)
            self._optional_checks.update(res.optional)
            consuming: asyncio.Task[None] | None = None
            counting = (asyncio.create_task(count_dead_letters(self.dead_letters, self.consumer_queues(),
                                                               self.settings.dead_letter_poll_seconds),
                                            name="dead-letter-gauges")
                        if self.dead_letters is not None and self.settings.metrics_enabled else None)
            try:
                if self.bus is not None:  # consumers last: every handler's dependencies exist now
                    if "broker" not in self.uses.ready_without:
                        await self.bus.start()
                    elif not (res.broker_connected and await try_start(self.bus)):
                        # Serving without RabbitMQ: the consumers start once it answers.
                        consuming = asyncio.create_task(start_consuming(self.bus), name="broker-connect")
                yield
            finally:
                await cancel(consuming, counting)
                if self.bus is not None:
                    # No delivery runs while the dependencies are torn down; the broker stays connected for the
                    # outbox relay's last round (``connect`` stops the relay, then the broker).
                    await self.bus.stop_consuming()
                self._deps = None
                tracing.shutdown_tracing()
                if self.dead_letters is not None:
                    await self.dead_letters.close()

    def consumer_queues(self) -> list[str]:
        """This service's consumer queues, without the namespace (``orders.stock_reserved``)."""
        return [sub.consumer_queue for sub in (self.bus.subscriptions if self.bus else [])]

    async def dlq_depths(self) -> dict[str, int]:
        """Dead letters per consumer queue of this service (one passive declare each; for metrics and health)."""
        if self.dead_letters is None:
            return {}
        return await self.dead_letters.depths(self.consumer_queues())

    def _dependencies(self) -> dict[str, Provide]:
        """``principal``, and every field of the dependencies object by its name."""
        deps: dict[str, Provide] = {"principal": Provide(provide_principal, sync_to_thread=False)}
        for name in (f.name for f in dataclasses.fields(self.deps_type)):  # type: ignore[arg-type]
            deps[name] = Provide(_field_provider(self, name), sync_to_thread=False)
        return deps

    def app(self) -> Litestar:
        def store_state(app_config: AppConfig) -> AppConfig:
            app_config.state["readiness_checks"] = self._checks
            app_config.state["optional_checks"] = self._optional_checks
            app_config.state["infrastructure"] = self.uses.infrastructure()
            app_config.state["service"] = self
            return app_config

        observe: list[DefineMiddleware] = []
        if tracing.tracing_enabled():
            observe += tracing.http_middleware(self.route_label or route_template)
        if self.settings.metrics_enabled:
            observe.append(http_metrics(self.settings.service_name, self.route_label))
        docs = swagger_routes(f"{SCHEMA_PATH}/swagger", f"{SCHEMA_PATH}/openapi.json", self.title)
        routes = [*HEALTH_HANDLERS, *self.routes, *docs,
                  *([MetricsController] if self.settings.metrics_enabled else [])]
        if self.dead_letters is not None and self.consumer_queues():
            routes.append(dead_letter_controller(self.settings.service_name, self.consumer_queues(),
                                                 self.dead_letters))
        app = Litestar(
            route_handlers=routes,
            lifespan=[self._lifespan],
            dependencies=self._dependencies(),
            exception_handlers=EXCEPTION_HANDLERS,
            middleware=[
                *observe,
                DefineMiddleware(AuthMiddleware, verifier=self.verifier, defer_rejection=self.defer_auth_rejection),
                *self.middleware,
                # With deferral, the extra middleware (a rate limiter) sees a bad token's request before the 401.
                *([RejectInvalidTokenMiddleware] if self.defer_auth_rejection else []),
            ],
            on_app_init=[store_state],
            logging_config=None,
            openapi_config=openapi_config(self.title, self.description),
            debug=False,
        )
        # Outside the router, so 404/405 answers from routing carry a request id too.
        app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
        return app


def _field_provider(service: Service[Any, Any], name: str) -> Callable[[], Any]:
    def provide() -> Any:
        return getattr(service.deps, name)

    provide.__name__ = f"provide_{name}"
    return provide


SCHEMA_PATH = "/schema"


def openapi_config(title: str, description: str | None = None) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version="0.1.0",
        description=description,
        path=SCHEMA_PATH,
        # Swagger UI is the kit's own route (shopkit.swagger, SCHEMA_PATH/swagger): no CDN.
        render_plugins=[JsonRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            }
        ),
    )


BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]
"""Use as ``security=BEARER`` on routes that need a token, so the OpenAPI says who may call them."""
