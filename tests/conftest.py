"""Session-wide fixtures: one SecantusDB, one shop (every service as a real process), a real broker and Redis.

Tests isolate themselves with unique names (emails, SKUs) and a per-session namespace for
exchange, queue and Redis key names, never with sleeps.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devtools import infra
from devtools.broker_cleanup import delete_namespace
from devtools.procs import Proc
from devtools.secantus import mongo_url as secantus_url
from devtools.secantus import port_of, secantus_proc, wait_secantus
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop, ensure_private_key


def pytest_sessionstart(session: pytest.Session) -> None:
    if not infra.ensure_all():
        pytest.exit("RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are required; see the messages above.",
                    returncode=3)


@pytest.fixture(scope="session")
def namespace() -> Iterator[str]:
    """This session's prefix for exchange, queue and Redis key names; its queues are deleted at the end."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    yield prefix
    delete_namespace("amqp://guest:guest@127.0.0.1:5672/", prefix)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_private_key(tmp_path_factory.mktemp("keys") / "jwt-private.pem")


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """One SecantusDB process for the whole session, reached over the wire."""
    proc: Proc = secantus_proc().start()
    try:
        wait_secantus(proc)
        yield secantus_url(port_of(proc))
    finally:
        proc.stop()


def shop_factory() -> Callable[..., LocalShop]:
    """LocalShop, or ContainerShop of the image named by ``MICROSHOP_TEST_IMAGE`` (the suite's one switch)."""
    image = os.environ.get("MICROSHOP_TEST_IMAGE", "").strip()
    if not image:
        return LocalShop
    from devtools.containers import ContainerShop, docker_client

    docker, why = docker_client()
    if docker is None:
        pytest.exit(f"MICROSHOP_TEST_IMAGE={image}: {why}", returncode=3)
    return functools.partial(ContainerShop, image=image, docker=docker)


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
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000", "MICROSHOP_LOG_LEVEL": os.environ.get("SHOP_LOG", "INFO")},
        out=None,
        # SHOP_SERVICES=customers,gateway starts a subset (handy while a service is being written).
        services=os.environ["SHOP_SERVICES"].split(",") if os.environ.get("SHOP_SERVICES") else None,
    )
    try:
        local.start(timeout=90)
        yield local
    finally:
        local.stop()


@pytest.fixture
async def api(shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the public API: ``/api`` on the gateway."""
    async with httpx.AsyncClient(base_url=f"{shop.url('gateway')}/api", timeout=15.0) as client:
        yield client


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@Example.com"


async def register_and_login(api: httpx.AsyncClient, email: str | None = None,
                             password: str = "correct horse battery") -> dict[str, str]:
    email = email or unique_email()
    r = await api.post("/auth/register", json={"email": email, "password": password, "name": "Test User"})
    assert r.status_code == 201, r.text
    r = await api.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {**r.json(), "email": email, "id": (await me(api, r.json()["access_token"]))["id"]}


async def me(api: httpx.AsyncClient, token: str) -> dict[str, str]:
    r = await api.get("/customers/me", headers=bearer(token))
    assert r.status_code == 200, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def customer(api: httpx.AsyncClient) -> dict[str, str]:
    """A fresh customer: ``access_token``, ``refresh_token``, ``email``, ``id``."""
    return await register_and_login(api)


@pytest.fixture
async def admin_token(api: httpx.AsyncClient) -> str:
    r = await api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": DEV_ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
