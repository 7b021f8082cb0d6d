"""The integration tier: real RabbitMQ and Redis, one SecantusDB, the whole shop as processes.

RabbitMQ and Redis must answer on 127.0.0.1 (5672, 6379); ``rabbitmq_and_redis`` makes sure of
it before the first test of this tier, starting or installing them as ``make infra`` does, so
a run that selects no integration test never touches them.

Tests isolate themselves with unique names (emails, SKUs) and a per-session namespace for
exchange, queue and Redis key names, never with sleeps. Helpers shared by the modules live in
``tests/support`` (``api``, ``alerts``, ``gateway``, ``saga``); the fixtures are here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from devtools import infra
from devtools.procs import Proc
from devtools.secantus import mongo_url as secantus_url
from devtools.secantus import port_of, secantus_proc, wait_secantus
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from tests.support.api import api_client, register_and_login
from tests.support.saga import WireTap, login, new_customer, public_client
from tests.support.session import session_key_file, session_namespace
from tests.support.shops import running, shop_factory
from tests.support.tokens import TokenMint


@pytest.fixture(scope="session", autouse=True)
def rabbitmq_and_redis() -> None:
    """RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379 answer (started or installed when missing)."""
    if not infra.ensure_all():
        pytest.exit("RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are required; see the messages above.",
                    returncode=3)


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
    """This session's prefix for exchange, queue and Redis key names; its queues are deleted at the end."""
    with session_namespace("t") as prefix:
        yield prefix


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_key_file(tmp_path_factory)


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """One SecantusDB process for the whole session, reached over the wire."""
    proc: Proc = secantus_proc().start()
    try:
        wait_secantus(proc)
        yield secantus_url(port_of(proc))
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def shop(mongo_url: str, namespace: str, key_file: Path) -> Iterator[LocalShop]:
    """Every service of this checkout and the gateway, as separate processes on free ports.

    ``MICROSHOP_TEST_IMAGE=microshop:<tag>`` runs them as containers of that image instead (as the chart
    runs them, on the host network; devtools.containers), so the whole suite tests the image.
    """
    local = shop_factory()(
        key_file=key_file,
        mongo=mongo_url,
        namespace=namespace,
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000", "MICROSHOP_DEAD_LETTER_POLL_SECONDS": "1",
             "MICROSHOP_LOG_LEVEL": os.environ.get("SHOP_LOG", "INFO")},
        out=None,
        # SHOP_SERVICES=customers,gateway starts a subset (handy while a service is being written).
        services=os.environ["SHOP_SERVICES"].split(",") if os.environ.get("SHOP_SERVICES") else None,
    )
    with running(local):
        yield local


@pytest.fixture(scope="module")
def mint(shop: LocalShop, key_file: Path) -> TokenMint:
    """Mints access tokens that the shop's services accept (``tests.support.tokens.TokenMint``)."""
    return TokenMint.from_shop(shop, key_file)


@pytest.fixture
async def api(shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the public API: ``/api`` on the gateway."""
    async with api_client(shop) as client:
        yield client


@pytest.fixture
async def customer(api: httpx.AsyncClient) -> dict[str, str]:
    """A fresh customer: ``access_token``, ``refresh_token``, ``email``, ``id``."""
    return await register_and_login(api)


@pytest.fixture
async def admin_token(api: httpx.AsyncClient) -> str:
    r = await api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


# The products / orders / saga modules' fixtures (helpers in tests/support/saga.py).

@pytest.fixture
async def shop_api(shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    """The public API through the gateway (or straight to the owning service when the shop runs none)."""
    async with public_client(shop) as client:
        yield client


@pytest.fixture
async def admin(shop_api: httpx.AsyncClient) -> str:
    return await login(shop_api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)


@pytest.fixture
async def buyer(shop_api: httpx.AsyncClient) -> str:
    return await new_customer(shop_api)


@pytest.fixture
async def mongo_client(mongo_url: str) -> AsyncIterator[AsyncMongoClient[Any]]:
    """A client of the session's SecantusDB, closed after the test."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def products_db(mongo_client: AsyncMongoClient[Any]) -> AsyncDatabase[Any]:
    """The session shop's products database, to observe what the saga recorded."""
    return mongo_client["products"]


@pytest.fixture
def customers_db(mongo_client: AsyncMongoClient[Any]) -> AsyncDatabase[Any]:
    """The session shop's customers database, to inspect (or age) refresh tokens and their families."""
    return mongo_client["customers"]


@pytest.fixture
async def wire(namespace: str) -> AsyncIterator[WireTap]:
    tap = await WireTap(namespace).start()
    try:
        yield tap
    finally:
        await tap.close()


@pytest.fixture
async def database(mongo_url: str) -> AsyncIterator[tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]]:
    """A database of its own on the session's SecantusDB (for tests that drive handlers directly)."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client, client[f"h{uuid.uuid4().hex[:10]}"]
    await client.close()
