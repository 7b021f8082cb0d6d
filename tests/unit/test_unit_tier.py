"""The unit tier's own rule (tests/unit/conftest.py): no services, no network, whatever the code under test does."""

from __future__ import annotations

import asyncio
import socket

import pytest

from products.settings import Settings as ProductsSettings
from shopkit.settings import ServiceSettings
from tests.unit.conftest import NetworkBlocked, SettingsFactory


@pytest.mark.parametrize("port", [5672, 6379, 27017, 8000])
def test_a_connect_is_refused_and_recorded_to_fail_the_test(no_network: list[str], port: int) -> None:
    with pytest.raises(NetworkBlocked), socket.socket() as sock:
        sock.connect(("127.0.0.1", port))
    assert len(no_network) == 1
    no_network.clear()  # refused on purpose here; otherwise the test fails even if the error was swallowed


async def test_asyncio_connections_are_refused_too(no_network: list[str]) -> None:
    with pytest.raises(NetworkBlocked):
        await asyncio.open_connection("127.0.0.1", 6379)
    assert no_network == ["Redis at ('127.0.0.1', 6379)"]
    no_network.clear()


@pytest.mark.allow_connect
def test_an_opted_in_test_reaches_its_own_listener_but_never_the_services(no_network: list[str]) -> None:
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
    with pytest.raises(NetworkBlocked), socket.socket() as sock:
        sock.connect(("127.0.0.1", 5672))
    no_network.clear()


def test_unix_sockets_are_allowed() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"


def test_settings_have_a_namespace_of_their_own(settings: ServiceSettings, namespace: str) -> None:
    assert settings.namespace == namespace and settings.service_name == "unit"
    assert namespace.startswith("u") and namespace.endswith(".")


def test_a_service_s_settings_keep_its_name_in_the_test_s_namespace(make_settings: SettingsFactory,
                                                                     namespace: str) -> None:
    products = make_settings(ProductsSettings, cache_ttl_seconds=5)
    assert isinstance(products, ProductsSettings)
    assert (products.service_name, products.namespace, products.cache_ttl_seconds) == ("products", namespace, 5)
