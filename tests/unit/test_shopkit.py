"""The shared kit on its own: redaction, problem+json, request ids, JWKS caching, token checks, events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from pydantic import BaseModel, Field

from customers.keys import SigningKey
from shopkit import registry
from shopkit.app import Resources, Service, Uses
from shopkit.auth import InvalidToken, JwksCache, TokenVerifier
from shopkit.contracts.events import StockLow
from shopkit.errors import EXCEPTION_HANDLERS, ProblemError
from shopkit.events import CloudEvent, new_event
from shopkit.logging import ContextFilter, JsonFormatter, redact
from shopkit.requestid import RequestIdMiddleware
from shopkit.settings import ServiceSettings
from tests.support.docs import assert_self_contained_docs
from tests.support.tokens import attack_tokens, claims, mint


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"password": "hunter2-secret"}', "hunter2-secret"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("amqp://guest:s3cr3tpw@rabbit:5672/", "s3cr3tpw"),
        ("refresh_token=tok_abcdef123&x=1", "tok_abcdef123"),
        ("password_hash='$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'", "aGFzaA"),
        ("key -----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----", "MC4CAQAwBQYDK2VwBCIEI"),
        ("got eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NTY3OCJ9.c2lnbmF0dXJl", "eyJzdWIiOiIxMjM0NTY3OCJ9"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_keeps_ordinary_text() -> None:
    assert redact("customer 42 registered with a@b.io") == "customer 42 registered with a@b.io"


def test_json_log_line_is_redacted_and_carries_ids() -> None:
    from shopkit.context import request_id_var

    token = request_id_var.set("rid-1")
    try:
        record = logging.makeLogRecord({"msg": "login with password=%s", "args": ("topsecret",), "levelno": 20,
                                        "levelname": "INFO", "name": "t"})
        ContextFilter().filter(record)
        line = JsonFormatter("svc").format(record)
    finally:
        request_id_var.reset(token)
    assert "topsecret" not in line
    assert '"request_id": "rid-1"' in line and '"service": "svc"' in line


class Body(BaseModel):
    name: str = Field(min_length=2)
    qty: int = Field(ge=1)


@post("/things", sync_to_thread=False)
def create_thing(data: JSONBody[Body]) -> dict[str, Any]:
    return data.model_dump()


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("internal detail that must not leak")


@get("/conflict", sync_to_thread=False)
def conflict() -> None:
    raise ProblemError(409, "already there", type_="duplicate", thing="x")


def _app() -> Litestar:
    return Litestar([create_thing, boom, conflict], exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[RequestIdMiddleware], logging_config=None)


async def test_validation_error_is_422_problem_naming_field_and_rule() -> None:
    async with AsyncTestClient(_app()) as client:
        r = await client.post("/things", json={"name": "x", "qty": 0})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    errors = {e["field"]: e["rule"] for e in r.json()["errors"]}
    assert set(errors) == {"name", "qty"}
    assert "at least 2" in errors["name"] and "greater than or equal to 1" in errors["qty"]


async def test_malformed_json_is_400_problem() -> None:
    async with AsyncTestClient(_app()) as client:
        r = await client.post("/things", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["status"] == 400


async def test_unexpected_error_is_500_without_details() -> None:
    async with AsyncTestClient(_app()) as client:
        r = await client.get("/boom", headers={"x-request-id": "abc-123"})
    assert r.status_code == 500
    assert "internal detail" not in r.text
    assert r.json()["request_id"] == "abc-123"
    assert r.headers["x-request-id"] == "abc-123"


async def test_problem_error_carries_type_and_extensions() -> None:
    async with AsyncTestClient(_app()) as client:
        r = await client.get("/conflict")
    body = r.json()
    assert r.status_code == 409
    assert body["type"] == "https://microshop.dev/problems/duplicate" and body["thing"] == "x"


async def test_request_id_generated_or_sanitised() -> None:
    async with AsyncTestClient(_app()) as client:
        generated = (await client.get("/conflict")).headers["x-request-id"]
        hostile = (await client.get("/conflict", headers={"x-request-id": "bad id\nwith newline"})).headers
    assert len(generated) == 32
    assert hostile["x-request-id"] != "bad id\nwith newline" and len(hostile["x-request-id"]) == 32


def _key() -> SigningKey:
    return SigningKey.from_private_key(Ed25519PrivateKey.generate())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_jwks_cache_refetches_on_unknown_kid_but_not_in_a_loop() -> None:
    keys = [_key()]
    calls = 0

    async def source() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"keys": [k.public_jwk for k in keys]}

    clock = Clock()
    cache = JwksCache(source, ttl_seconds=300, clock=clock)
    assert (await cache.get(keys[0].kid)).key_id == keys[0].kid
    assert calls == 1
    await cache.get(keys[0].kid)
    assert calls == 1  # cached
    keys.append(_key())
    clock.now += JwksCache.MIN_REFRESH_SECONDS + 1
    assert (await cache.get(keys[1].kid)).key_id == keys[1].kid  # unknown kid → refetch
    assert calls == 2
    with pytest.raises(InvalidToken):
        await cache.get("no-such-kid")  # refetch throttled: no third call right away
    assert calls == 2


async def test_jwks_cache_serves_stale_keys_while_refetching_in_the_background_with_backoff() -> None:
    """Old keys and a failing JWKS endpoint: requests never wait for it, and it is not retried per request."""
    key = _key()
    calls = 0
    down = False
    hang = asyncio.Event()

    async def source() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if down:
            await asyncio.wait_for(hang.wait(), 0.05)  # a slow, failing endpoint (the timeout)
        return key.jwks()

    clock = Clock()
    cache = JwksCache(source, ttl_seconds=300, clock=clock)
    await cache.get(key.kid)
    assert calls == 1
    down = True
    clock.now += 301  # the keys are past their lifetime
    started = time.monotonic()
    got = await asyncio.gather(*(cache.get(key.kid) for _ in range(50)))
    assert all(k.key_id == key.kid for k in got)
    assert time.monotonic() - started < 0.04  # nobody waited for the fetch
    await asyncio.sleep(0.1)  # the one background fetch fails
    assert calls == 2 and cache.failures == 1
    for _ in range(50):  # remembered: no fetch before the backoff
        assert (await cache.get(key.kid)).key_id == key.kid
    with pytest.raises(InvalidToken, match="unavailable"):
        await cache.get("rotated-kid")  # refused at once, no fetch
    assert calls == 2
    clock.now += JwksCache.BACKOFF_SECONDS + 0.1
    await cache.get(key.kid)
    await asyncio.sleep(0.1)
    assert calls == 3 and cache.failures == 2  # retried after 1 s; the next wait is 2 s
    clock.now += JwksCache.BACKOFF_SECONDS + 0.1
    await cache.get(key.kid)
    assert calls == 3
    clock.now += JwksCache.BACKOFF_SECONDS
    down = False
    await cache.get(key.kid)
    await asyncio.sleep(0.01)
    assert calls == 4 and cache.failures == 0  # recovered: fresh keys again
    await cache.get(key.kid)
    assert calls == 4


async def test_jwks_cache_without_keys_shares_one_fetch_and_remembers_its_failure() -> None:
    calls = 0

    async def source() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise OSError("connection refused")

    cache = JwksCache(source, ttl_seconds=300, clock=Clock())
    results = await asyncio.gather(*(cache.get("kid") for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, InvalidToken) for r in results)
    assert calls == 1
    with pytest.raises(InvalidToken, match="unavailable"):
        await cache.get("kid")
    assert calls == 1


async def test_token_verifier_accepts_good_and_refuses_every_attack() -> None:
    key = _key()

    async def source() -> dict[str, Any]:
        return key.jwks()

    verifier = TokenVerifier(ServiceSettings(), source=source)
    principal = await verifier.verify(mint(key, claims("u1", role="admin")))
    assert principal.id == "u1" and principal.is_admin
    for name, token in attack_tokens(key, "u1").items():
        with pytest.raises(InvalidToken):  # noqa: PT012 - the fail() names the token that got through
            await verifier.verify(token)
            pytest.fail(f"{name} was accepted")
    with pytest.raises(InvalidToken):
        await verifier.verify(mint(key, claims("u1", role="root")))


def test_event_envelope_is_cloudevents_with_correlation() -> None:
    from shopkit.context import correlation_id_var

    token = correlation_id_var.set("corr-9")
    try:
        event = new_event(StockLow(product_id="p1", stock=1), "products")
    finally:
        correlation_id_var.reset(token)
    wire = event.model_dump(mode="json")
    assert set(wire) == {"id", "source", "type", "time", "specversion", "datacontenttype", "correlationid", "data"}
    assert wire["specversion"] == "1.0" and wire["correlationid"] == "corr-9" and wire["type"] == "stock_low"
    assert CloudEvent.model_validate(wire) == event


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROSHOP_NAMESPACE", "abc.")
    monkeypatch.setenv("MICROSHOP_MONGO_URL", "mongodb://user:pw@db:27017")
    settings = ServiceSettings(service_name="orders")
    assert settings.namespace == "abc." and settings.database_name == "orders"
    assert "pw" not in repr(settings)


@dataclass
class NoDeps:
    pass


def _service_app() -> Litestar:
    """A kit service with no dependencies and one route (``conflict``)."""
    async def build(_: Resources[ServiceSettings]) -> AsyncIterator[NoDeps]:
        yield NoDeps()

    return Service(ServiceSettings, None, title="t", description="d", routes=[conflict], build=build,
                   uses=Uses(mongo=False)).app()


async def test_service_app_puts_request_id_on_routing_errors() -> None:
    async with AsyncTestClient(_service_app()) as client:
        missing = await client.get("/no-such-route")
        wrong_method = await client.post("/health/live")
    for r in (missing, wrong_method):
        assert r.headers["content-type"].startswith("application/problem+json")
        assert len(r.headers["x-request-id"]) == 32
        assert r.json()["request_id"] == r.headers["x-request-id"]
    assert (missing.status_code, wrong_method.status_code) == (404, 405)


async def test_service_swagger_page_is_served_from_the_service_itself() -> None:
    """Every service's /schema/swagger works offline: the Swagger UI files come from the service, not a CDN."""
    async with AsyncTestClient(_service_app()) as client:
        await assert_self_contained_docs(client, "/schema/swagger", "/schema/openapi.json")


@pytest.mark.allow_connect
@pytest.mark.parametrize(("ready_without", "code", "status"), [
    (frozenset(), 503, "unavailable"),
    (frozenset({"redis"}), 200, "degraded"),
])
async def test_readiness_fails_only_on_required_dependencies(
        ready_without: frozenset[str], code: int, status: str) -> None:
    """A dependency the service works without (``ready_without``) is reported degraded, never unready."""
    from devtools.procs import free_port

    async def build(_: Resources[ServiceSettings]) -> AsyncIterator[NoDeps]:
        yield NoDeps()

    settings = ServiceSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # type: ignore[arg-type]
    app = Service(ServiceSettings, settings, title="t", description="d", routes=[], build=build,
                  uses=Uses(mongo=False, redis=True, ready_without=ready_without)).app()
    async with AsyncTestClient(app) as client:
        r = await client.get("/health/ready")
    assert r.status_code == code
    assert r.json() == {"status": status, "degraded": ["redis"] if ready_without else [],
                        "checks": {"redis": {"status": "down", "required": not ready_without}}}


async def test_readiness_fails_once_the_service_is_shutting_down() -> None:
    from shopkit.health import HEALTH_HANDLERS, start_draining

    app = Litestar(HEALTH_HANDLERS, logging_config=None)
    async with AsyncTestClient(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        start_draining(app)
        r = await client.get("/health/ready")
        assert (r.status_code, r.json()["status"]) == (503, "shutting_down")
        assert (await client.get("/health/live")).status_code == 200, "still alive: it finishes what it has"


def test_services_on_secantusdb_are_told_to_sweep_and_the_default_is_the_ttl_index(tmp_path: Path) -> None:
    """``make dev``, the benchmarks and the tests start SecantusDB: its TTL sweeper holds back WiredTiger's
    cleanup, so the services sweep themselves there; real MongoDB (the chart) keeps the TTL index."""
    import yaml

    from devtools.secantus import SERVICE_ENV
    from devtools.shop import LocalShop

    assert ServiceSettings().mongo_expiry == "ttl-index"
    shop = LocalShop(key_file=tmp_path / "key.pem", mongo="mongodb://127.0.0.1:1", out=None)
    shop.ports = {name: 1 for name in registry.names()}
    env = shop.proc_for("customers").env
    assert env["MICROSHOP_MONGO_EXPIRY"] == "sweep"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert ServiceSettings().mongo_expiry == "sweep"
    # A real MongoDB given to make dev (MICROSHOP_* from the environment land in ``env``) can take it back.
    shop.env = {"MICROSHOP_MONGO_EXPIRY": "ttl-index"}
    assert shop.proc_for("customers").env["MICROSHOP_MONGO_EXPIRY"] == "ttl-index"
    host = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose.host.yaml").read_text())
    for service in registry.names():
        if service in host["services"]:
            assert SERVICE_ENV.items() <= host["services"][service]["environment"].items(), service


def test_tune_gc_freezes_what_exists_and_collects_the_young_generation_less_often() -> None:
    import gc

    from shopkit.serve import OLDER_GENERATIONS_EVERY, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(0)  # 0: Python's defaults, nothing frozen
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
        tune_gc(12_345)
        assert gc.get_threshold() == (12_345, OLDER_GENERATIONS_EVERY, OLDER_GENERATIONS_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_serve_tunes_the_collector_once_the_app_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from shopkit import serve as serving

    built: list[bool] = []

    def create_app(settings: ServiceSettings) -> Litestar:
        assert gc.get_freeze_count() == 0, "the app is built before anything is frozen"
        built.append(True)
        return Litestar()

    monkeypatch.setattr(serving.DrainingServer, "run", lambda self: None)  # no socket, no loop
    before = gc.get_threshold()
    try:
        serving.serve(create_app, ServiceSettings(service_name="gctest", gc_young_threshold=23_456))
        assert built
        assert gc.get_threshold() == (23_456, serving.OLDER_GENERATIONS_EVERY, serving.OLDER_GENERATIONS_EVERY)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
