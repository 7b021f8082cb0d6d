"""Least privilege, for real: the whole shop runs with one database user and one broker user per service.

Each service gets the MongoDB user ``shopkit.mongo.database_user`` describes (``readWrite`` on its own
database, on a SecantusDB that requires SCRAM authentication) and a RabbitMQ user with exactly the
permissions its bus states (``EventBus.permissions``: the chart grants the same, which
tests/charts/test_infra_access.py checks). customers and the gateway get broker credentials that do
not exist: they must never need RabbitMQ. Then an order goes through the saga, a dead letter is replayed
through the gateway, and every service's credentials are refused what belongs to another.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pymongo
import pytest
from aiormq.exceptions import ChannelAccessRefused
from pymongo.errors import OperationFailure

from devtools.secantus import mongo_url as secantus_url
from devtools.secantus import port_of, secantus_proc, wait_secantus
from devtools.shop import DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, LocalShop
from shopctl.apps import CONSUMERS, service_bus
from shopkit.messaging.topology import Topology
from shopkit.mongo import database_user
from tests.support.saga import (
    auth,
    create_product,
    dead_letter_for_alerts,
    eventually,
    login,
    new_customer,
    place_order,
    public_client,
    stock_of,
    wait_for_status,
)
from tests.support.services import ON_DATABASE
from tests.support.shops import running, shop_factory

DATABASE_SERVICES = ON_DATABASE
BROKER_SERVICES = CONSUMERS  # every service on the bus
NO_SUCH_BROKER_USER = "amqp://nobody:nothing@127.0.0.1:5672/"


@dataclass
class Secured:
    mongo_port: int
    mongo_passwords: dict[str, str]
    broker_users: dict[str, tuple[str, str]]  # service -> (user, password)

    def mongo_url(self, service: str) -> str:
        spec = database_user(service)
        return (f"mongodb://{spec['user']}:{self.mongo_passwords[service]}@127.0.0.1:{self.mongo_port}/"
                f"{spec['db']}?authSource={spec['db']}&retryWrites=false&directConnection=true")

    def amqp_url(self, service: str) -> str:
        user, password = self.broker_users[service]
        return f"amqp://{user}:{password}@127.0.0.1:5672/"


def rabbitmqctl(*args: str) -> None:
    out = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"rabbitmqctl {args[0]}: {out.stderr or out.stdout}"


@pytest.fixture(scope="module")
def lp_namespace(namespace: str) -> str:
    return f"{namespace}lp{uuid.uuid4().hex[:6]}."


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, lp_namespace: str) -> Iterator[Secured]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: RabbitMQ users cannot be created here (it runs elsewhere)")
    # MongoDB: users created while auth is off, then the server restarted with --auth (SecantusDB's way).
    data = tmp_path_factory.mktemp("secured-mongo")
    passwords = {service: secrets.token_hex(16) for service in DATABASE_SERVICES}
    proc = secantus_proc(storage=data).start()
    try:
        wait_secantus(proc)
        port = port_of(proc)
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(secantus_url(port))
        for service in DATABASE_SERVICES:
            spec = database_user(service)
            client[spec["db"]].command("createUser", spec["user"], pwd=passwords[service], roles=spec["roles"])
        client.close()
    finally:
        proc.stop()
    proc = secantus_proc(port=port, storage=data, auth=True).start()
    users: dict[str, tuple[str, str]] = {}
    try:
        wait_secantus(proc)
        for service in BROKER_SERVICES:
            bus = service_bus(service)
            granted = Topology(lp_namespace).permissions(bus.consumers(), bus.consumed_exchanges(),
                                                         bus.published_exchanges())
            user, password = f"{lp_namespace}{service}", secrets.token_hex(16)
            rabbitmqctl("add_user", user, password)
            users[service] = (user, password)
            rabbitmqctl("set_permissions", "-p", "/", user, granted.configure, granted.write, granted.read)
        yield Secured(port, passwords, users)
    finally:
        for user, _ in users.values():
            subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True, timeout=60, check=False)
        proc.stop()


@pytest.fixture(scope="module")
def secured_shop(secured: Secured, lp_namespace: str, key_file: Path) -> Iterator[LocalShop]:
    service_env = {service: {"MICROSHOP_MONGO_URL": secured.mongo_url(service)} for service in DATABASE_SERVICES}
    for service in ("gateway", "customers"):
        service_env.setdefault(service, {})["MICROSHOP_RABBITMQ_URL"] = NO_SUCH_BROKER_USER
    for service in BROKER_SERVICES:
        service_env[service]["MICROSHOP_RABBITMQ_URL"] = secured.amqp_url(service)
    shop = shop_factory()(
        key_file=key_file, namespace=lp_namespace, out=None,
        # No credentials: nothing may reach the database without a service's own user.
        mongo=f"mongodb://127.0.0.1:{secured.mongo_port}/?directConnection=true",
        env={"MICROSHOP_RATE_LIMIT_REQUESTS": "1000000"}, service_env=service_env)
    with running(shop):
        yield shop


@pytest.fixture
async def api(secured_shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    async with public_client(secured_shop) as client:
        yield client


async def test_the_whole_saga_runs_with_a_user_per_service(api: httpx.AsyncClient) -> None:
    admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    customer = await new_customer(api)
    product = await create_product(api, admin, stock=5)
    order = await place_order(api, customer, [(product["id"], 2)])
    settled = await wait_for_status(api, customer, order["id"])
    assert settled["status"] == "confirmed", settled
    assert await stock_of(api, product["id"]) == 3

    async def alerted() -> bool:
        r = await api.get("/alerts", headers=auth(customer))
        return r.status_code == 200 and order["id"] in r.text

    await eventually(alerted, timeout=20, what="alerts (its own user) told the customer about the order")

    async def counted() -> bool:
        r = await api.get("/analytics/dashboard", headers=auth(admin))
        return r.status_code == 200 and r.json()["orders_by_status"].get("confirmed", 0) >= 1

    await eventually(counted, timeout=20, what="analytics (its own user) counted the confirmed order")


async def test_a_dead_letter_replays_with_the_services_own_broker_user(
        api: httpx.AsyncClient, lp_namespace: str) -> None:
    admin = await login(api, DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD)
    customer = await new_customer(api)
    me = (await api.get("/customers/me", headers=auth(customer))).json()
    event = await dead_letter_for_alerts(lp_namespace, me["id"])
    order_id = event.data["order_id"]
    base = "/alerts/admin/dead-letters/alerts.order_created"
    r = await api.post(f"{base}/replay", json={"ids": [event.id]}, headers=auth(admin))
    assert r.status_code == 200, r.text
    assert r.json() == {"queue": "alerts.order_created", "ids": [event.id]}

    async def alerted() -> bool:
        r = await api.get("/alerts", headers=auth(customer))
        return r.status_code == 200 and order_id in r.text

    await eventually(alerted, timeout=20, what="the replayed order_created handled by alerts")


async def _refused(url: str, action: str, lp_namespace: str) -> bool:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(b"{}", content_type="application/json")
        try:
            if action == "consume another service's queue":
                queue = await channel.declare_queue(f"{lp_namespace}analytics.order_created", passive=True)
                await queue.get(fail=False)
            elif action == "publish stock replies":
                exchange = await channel.get_exchange(f"{lp_namespace}product_exchange", ensure=False)
                await exchange.publish(message, routing_key="stock_reserved")
            elif action == "publish through the default exchange":
                await channel.default_exchange.publish(message, routing_key=f"{lp_namespace}products.order_created")
            elif action == "publish order events":
                exchange = await channel.get_exchange(f"{lp_namespace}order_exchange", ensure=False)
                await exchange.publish(message, routing_key="order_created")
        except ChannelAccessRefused:
            return True
        return False


@pytest.mark.parametrize(("service", "action"), [
    ("orders", "consume another service's queue"),
    ("orders", "publish stock replies"),
    ("orders", "publish through the default exchange"),
    ("analytics", "publish order events"),
    ("alerts", "publish order events"),
])
async def test_a_services_broker_user_is_refused_what_is_not_its_own(
        secured: Secured, secured_shop: LocalShop, lp_namespace: str, service: str, action: str) -> None:
    assert await _refused(secured.amqp_url(service), action, lp_namespace), f"{service} may {action}"


def test_a_services_database_user_reaches_its_own_database_only(secured: Secured, secured_shop: LocalShop) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(secured.mongo_url("orders"))
    try:
        assert client["orders"]["orders"].count_documents({}) >= 0  # its own: allowed
        for other in ("products", "customers", "admin"):
            with pytest.raises(OperationFailure) as refused:
                client[other]["anything"].find_one()
            assert refused.value.code == 13, f"orders read {other}: {refused.value}"  # Unauthorized
        with pytest.raises(OperationFailure):
            client["products"]["products"].insert_one({"sku": "stolen"})
    finally:
        client.close()
