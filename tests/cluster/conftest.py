"""The cluster tier's fixtures: three RabbitMQ nodes behind haproxy (``cluster``), the shop on them."""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devtools import infra
from devtools.rabbitmq_cluster import RABBITMQ_BIN, RabbitCluster
from devtools.shop import LocalShop
from tests.support.api import api_client
from tests.support.session import session_key_file
from tests.support.shops import dump


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes and haproxy; stopped and deleted at the end even when a test fails."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists() and not infra.install(infra.RABBITMQ):
        pytest.fail("Debian's rabbitmq-server is required for the cluster tier (see the messages above)")
    if not infra.ensure_installed(infra.HAPROXY):
        pytest.fail("haproxy is required for the cluster tier (see the messages above)")
    base = Path(tempfile.mkdtemp(prefix="microshop-rmq-cluster-"))
    rabbit = RabbitCluster(base)
    try:
        rabbit.start()
        yield rabbit
    except BaseException:
        for node in rabbit.nodes:
            if node.proc is not None:
                print(f"--- {node.name}", *node.proc.lines[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        rabbit.close()
    assert not base.exists()


@pytest.fixture(scope="module")
def cluster_shop(cluster: RabbitCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalShop]:
    if not infra.ensure(infra.REDIS):
        pytest.fail("Redis (127.0.0.1:6379) is required; see the messages above")
    shop = LocalShop(
        key_file=session_key_file(tmp_path_factory), namespace=f"cl{uuid.uuid4().hex[:8]}.", out=None,
        env={"MICROSHOP_RABBITMQ_URL": cluster.url, "MICROSHOP_RATE_LIMIT_REQUESTS": "1000000",
             "MICROSHOP_ORDER_MAX_OUTSTANDING_PER_PRODUCT": "0",
             "MICROSHOP_DEAD_LETTER_POLL_SECONDS": "1", "MICROSHOP_LOG_LEVEL": "INFO"},
    )
    try:
        shop.start(timeout=120)
        yield shop
    except BaseException:
        dump(shop)
        raise
    finally:
        shop.stop()


@pytest.fixture(scope="module")
async def api(cluster_shop: LocalShop) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(cluster_shop, timeout=30.0) as client:
        yield client
