"""The gateway app: the kit's service app (request ids, auth, problem+json, health) plus the edge duties."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, MediaType, Request, get
from litestar.di import NamedDependency
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.middleware import DefineMiddleware
from litestar.types import Receive, Scope, Send

from gateway.contracts import ContractRegistry, load_registry
from gateway.health import aggregate_health
from gateway.openapi import DocsCache
from gateway.pathguard import NormalPathMiddleware
from gateway.proxy import Proxy, Upstreams
from gateway.ratelimit import RateLimiter, RateLimitMiddleware
from gateway.routing import ACCESS_RULES, API_PREFIX, PREFIX_TO_SERVICE, public_path
from gateway.settings import Settings
from gateway.ws import WebSocketUpstream, ws_route
from shopkit.app import Resources, Service, Uses
from shopkit.requestid import RequestIdMiddleware
from shopkit.settings import ServiceSettings
from shopkit.swagger import swagger_routes


@dataclass
class Gateway:
    """Everything the gateway's handlers share; one per app."""

    settings: Settings
    contracts: ContractRegistry
    upstreams: Upstreams = field(init=False)
    limiter: RateLimiter = field(init=False)
    docs: DocsCache = field(default_factory=DocsCache)

    def __post_init__(self) -> None:
        self.upstreams = Upstreams(self.settings)
        self.limiter = RateLimiter(
            self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds, self.settings.namespace
        )


@get(f"{API_PREFIX}/health", summary="Health of every service", tags=["gateway"],
     description="Public. Each service's readiness probed concurrently; `status` is `ok` only when all run "
                 "and none is `degraded` (missing a dependency it works without, listed per service). "
                 "A service disabled by configuration is not listed.")
async def shop_health(gateway: NamedDependency[Gateway]) -> dict[str, object]:
    return await aggregate_health(
        gateway.upstreams.session, gateway.upstreams.urls, gateway.settings.health_timeout_seconds
    )


@get(f"{API_PREFIX}/docs/openapi.json", include_in_schema=False, media_type=MediaType.JSON)
async def combined_openapi(request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]) -> dict[str, Any]:
    own = request.app.openapi_schema.to_schema()
    return await gateway.docs.get(
        gateway.upstreams.session, gateway.upstreams.urls, gateway.settings.health_timeout_seconds, own
    )


def proxy_route(proxy: Proxy) -> ASGIRouteHandler:
    # A mount: every /api/... path the gateway does not serve itself goes to the proxy. Litestar
    # matches static paths (health, docs, the /api/ws WebSocket route) before a mount.
    # The mount cuts /api off scope["path"]; the proxy puts the public path back (so problem
    # documents name it), hence copy_scope=False on purpose.
    @asgi(API_PREFIX, is_mount=True, copy_scope=False)
    async def proxy_to_service(scope: Scope, receive: Receive, send: Send) -> None:
        await proxy(scope, receive, send)

    return proxy_to_service


def route_label(scope: Scope) -> str:
    """The HTTP metrics' ``path`` label: a bounded template, also for the proxy (one mount at ``/api``).

    Proxied paths are labelled by the access rule they match (``/api/products/{id}``), else by
    their service prefix (``/api/orders``); an unknown prefix is ``/api/{unknown}``, never the path.
    """
    template = str(scope.get("path_template") or "")
    if template not in ("", API_PREFIX):  # a route of the gateway's own (the proxy mount has no template)
        return template
    path = public_path(scope).removeprefix(API_PREFIX)
    for rule in ACCESS_RULES:
        if rule.pattern.match(path):
            return API_PREFIX + rule.template
    first = path.lstrip("/").split("/", 1)[0]
    return f"{API_PREFIX}/{first}" if first in PREFIX_TO_SERVICE else f"{API_PREFIX}/{{unknown}}"


@dataclass
class Deps:
    gateway: Gateway


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)
    gateway = Gateway(config, load_registry())
    sockets = WebSocketUpstream(config.alerts_url)

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        gateway.limiter.bind(res.redis)
        await gateway.upstreams.start()
        try:
            yield Deps(gateway)
        finally:
            await gateway.upstreams.close()
            await sockets.close()

    edge = [shop_health, combined_openapi,
            *swagger_routes(f"{API_PREFIX}/docs", f"{API_PREFIX}/docs/openapi.json", "microshop API"),
            ws_route(sockets, config.ws_send_timeout_seconds),
            proxy_route(Proxy(config, gateway.upstreams, gateway.contracts))]
    # Requests with an invalid token count against the caller's IP before they get their 401.
    limit = DefineMiddleware(RateLimitMiddleware, limiter=gateway.limiter,
                             trust_forwarded_for=config.trust_forwarded_for)
    app = Service(
        Settings, config, build=build, routes=edge, middleware=[limit], defer_auth_rejection=True,
        route_label=route_label,
        # The limiter fails open, so Redis is not a readiness dependency of the gateway: a Redis
        # outage must not take the shop's only entry point out of the load balancer.
        uses=Uses(mongo=False, redis=True, ready_without=frozenset({"redis"})),
        title="microshop gateway",
        description="The single entry point: /api/<path> is routed to the service owning <path>.",
    ).app()
    # Non-normal paths are refused before routing (so before any access rule or contract), inside the
    # request-id layer (so the 400 carries one).
    request_ids = app.asgi_handler
    assert isinstance(request_ids, RequestIdMiddleware)
    request_ids.app = NormalPathMiddleware(request_ids.app)
    return app
