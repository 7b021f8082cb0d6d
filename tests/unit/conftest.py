"""The unit tier: no services at all (no RabbitMQ, Redis, MongoDB or shop processes) and no network.

``no_network`` (autouse) refuses every connect on an internet socket and fails the test that
tried, even when the code under test swallowed the error (the rate limiter fails open, clients
retry). Unix sockets stay allowed. A test that needs a connection of its own, such as a
refused one to a free local port, opts in with ``@pytest.mark.allow_connect``; the service ports
(5672 RabbitMQ, 6379 Redis, 27017 MongoDB) stay refused even then. A test that needs a real
service belongs in tests/integration.

Handlers and the event bus run under FastStream's ``TestRabbitBroker`` (no broker process); the
``settings`` / ``make_settings`` fixtures give each test settings with a namespace of its own.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import pytest

from shopkit.settings import ServiceSettings

SERVICE_PORTS = {5672: "RabbitMQ", 6379: "Redis", 27017: "MongoDB"}

S = TypeVar("S", bound=ServiceSettings)


class SettingsFactory(Protocol):
    def __call__(self, cls: type[S] = ..., /, **values: Any) -> S: ...


class NetworkBlocked(RuntimeError):
    """A unit test tried to open a network connection."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_connect: a unit test that opens connections of its own (never to the service ports)")


def _refusal(sock: socket.socket, address: Any, allowed: bool) -> str | None:
    """Why this connect is refused, or None when it may go ahead."""
    if sock.family == getattr(socket, "AF_UNIX", None):
        return None
    port = address[1] if isinstance(address, tuple) and len(address) >= 2 else None
    if port in SERVICE_PORTS:
        return f"{SERVICE_PORTS[port]} at {address!r}"
    return None if allowed else f"{address!r}"


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse internet connects for this test; yields the refused attempts (a test may clear them)."""
    allowed = request.node.get_closest_marker("allow_connect") is not None
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        refused = _refusal(sock, address, allowed)
        if refused is not None:
            attempts.append(refused)
            raise NetworkBlocked(f"unit tests open no connections: {refused} (needs a service? tests/integration)")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    if attempts:
        pytest.fail(f"a unit test tried to connect to {', '.join(attempts)}; unit tests run with no services "
                    "and no network (tests/unit/conftest.py)", pytrace=False)


@pytest.fixture
def namespace() -> str:
    """A prefix of this test's own for exchange, queue and Redis key names."""
    return f"u{uuid.uuid4().hex[:8]}."


@pytest.fixture
def make_settings(namespace: str) -> SettingsFactory:
    """``make_settings(cls=ServiceSettings, /, **values)``: a service's settings in this test's namespace.

    The base class gets ``service_name="unit"``; a service's own class keeps its name (and so its
    queue and database names). Keyword arguments win over ``MICROSHOP_*`` variables.
    """
    def make(cls: type[Any] = ServiceSettings, /, **values: Any) -> Any:
        values.setdefault("namespace", namespace)
        if cls is ServiceSettings:
            values.setdefault("service_name", "unit")
        return cls(**values)

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> ServiceSettings:
    """Kit settings for a bus or broker under ``TestRabbitBroker``: service ``unit``, this test's namespace."""
    return make_settings()
