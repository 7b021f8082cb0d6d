"""``create_service_app``: the one place a microshop service is assembled.

A service passes its route handlers, which resources it uses and its startup work; the
kit adds logging, request ids, JWT auth, problem+json errors, health, OpenAPI and the
lifespan that connects Mongo / Redis / RabbitMQ and closes them again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from odmantic import AIOEngine
from redis.asyncio import Redis

from shopkit import mongo
from shopkit.auth import AuthMiddleware, RejectInvalidTokenMiddleware, TokenVerifier, provide_principal
from shopkit.broker import EventBus
from shopkit.errors import EXCEPTION_HANDLERS
from shopkit.health import HEALTH_HANDLERS, ReadinessCheck
from shopkit.logging import configure_logging
from shopkit.outbox import OutboxRelay, ensure_outbox_indexes
from shopkit.redis import create_redis
from shopkit.requestid import RequestIdMiddleware
from shopkit.settings import ServiceSettings

Hook = Callable[["Resources"], Awaitable[None]]


@dataclass
class Resources:
    """What a running service holds; on ``app.state.resources`` and injectable as ``resources``."""

    settings: ServiceSettings
    mongo_client: AsyncIOMotorClient[Any] | None = None
    engine: AIOEngine | None = None
    redis: Redis | None = None
    bus: EventBus | None = None
    relay: OutboxRelay | None = None
    verifier: TokenVerifier | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def db(self) -> AsyncIOMotorDatabase[Any]:
        assert self.mongo_client is not None, "this service does not use MongoDB"
        return self.mongo_client[self.settings.database_name]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    route_handlers: Sequence[ControllerRouterHandler],
    use_mongo: bool = True,
    use_redis: bool = False,
    bus: EventBus | None = None,
    use_outbox: bool = False,
    verifier: TokenVerifier | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    dependencies: dict[str, Provide] | None = None,
    extra_middleware: Sequence[Any] = (),
    defer_auth_rejection: bool = False,
    description: str | None = None,
) -> Litestar:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    resources = Resources(settings=settings, bus=bus, verifier=verifier or TokenVerifier(settings))
    checks: dict[str, ReadinessCheck] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if use_mongo:
                client = mongo.create_client(settings)
                stack.callback(client.close)
                resources.mongo_client = client
                resources.engine = mongo.create_engine(client, settings)
                checks["mongo"] = lambda: mongo.ping(client)
            if use_redis:
                redis = create_redis(settings)
                stack.push_async_callback(redis.aclose)
                resources.redis = redis
                checks["redis"] = redis.ping
            if bus is not None:
                await bus.connect()
                stack.push_async_callback(bus.stop)
                checks["broker"] = lambda: bus.broker.ping(timeout=2.0)
            if use_outbox:
                assert bus is not None and resources.mongo_client is not None, "the outbox needs Mongo and a bus"
                await ensure_outbox_indexes(resources.db)
                relay = resources.relay = OutboxRelay(resources.db, bus)
                relay.start()
                stack.push_async_callback(relay.stop)
            for hook in on_startup:
                await hook(resources)
            for hook in reversed(on_shutdown):
                stack.push_async_callback(hook, resources)
            if bus is not None:
                # Consumers start last: every handler's dependencies exist by the first delivery.
                await bus.start()
            yield

    def provide_resources() -> Resources:
        return resources

    def provide_engine() -> AIOEngine:
        assert resources.engine is not None
        return resources.engine

    deps: dict[str, Provide] = {
        "resources": Provide(provide_resources, sync_to_thread=False),
        "engine": Provide(provide_engine, sync_to_thread=False),
        "principal": Provide(provide_principal, sync_to_thread=False),
    }
    deps.update(dependencies or {})

    def store_state(app_config: AppConfig) -> AppConfig:
        app_config.state["resources"] = resources
        app_config.state["readiness_checks"] = checks
        # What this service connects to; the chart's NetworkPolicies are tested against it.
        app_config.state["infrastructure"] = sorted(
            name for name, used in (("mongodb", use_mongo), ("redis", use_redis), ("rabbitmq", bus is not None))
            if used
        )
        return app_config

    assert resources.verifier is not None
    app = Litestar(
        route_handlers=[*HEALTH_HANDLERS, *route_handlers],
        lifespan=[lifespan],
        dependencies=deps,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            DefineMiddleware(AuthMiddleware, verifier=resources.verifier, defer_rejection=defer_auth_rejection),
            *extra_middleware,
            # With deferral, the extra middleware (a rate limiter) sees a bad token's request before the 401.
            *([RejectInvalidTokenMiddleware] if defer_auth_rejection else []),
        ],
        on_app_init=[store_state],
        logging_config=None,
        openapi_config=openapi_config(title, description),
        debug=False,
    )
    # Outside the router, so 404/405 answers from routing carry a request id too.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)
    return app


def openapi_config(title: str, description: str | None = None) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version="0.1.0",
        description=description,
        path="/schema",
        render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                "BearerToken": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
            }
        ),
    )


BEARER: list[dict[str, list[str]]] = [{"BearerToken": []}]
"""Use as ``security=BEARER`` on routes that need a token, so the OpenAPI says who may call them."""
