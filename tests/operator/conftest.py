"""The operator under kopf's real runtime (``python -m microshop_operator``) against an extended kmock emulator.

One emulator serves the whole session. The operator chart is installed into it with its default
values (a namespaced install serving its release namespace, ``shops``), except for shorter intervals
given through the chart's ``env`` value (resync 1s, backoff 0.5s) so that drift repair and retries are
observable in seconds; one replica runs as a local process under the chart's service account, so
every call it makes is authorized against the chart's RBAC. Each test works in its own Shops there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kmock
import pytest
import pytest_asyncio

from devtools.helm import ensure_helm
from tests.operator.api import Api, eventually
from tests.operator.emulator import ClusterEmulator
from tests.operator.install import Release, install, render, start_pod, stop_pod
from tests.operator.scenarios import Env, emulated_orders_unready, emulated_ready

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "microshop-operator"
NAMESPACE = "shops"
# Only the operator's own settings differ from the chart's defaults (RBAC, args and lease are as installed).
TEST_VALUES = {"env": {"MICROSHOP_OPERATOR_RESYNC_SECONDS": "1", "MICROSHOP_OPERATOR_BACKOFF_SECONDS": "0.5",
                       "MICROSHOP_OPERATOR_BACKOFF_MAX_SECONDS": "2"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_rbac judges the calls of every other operator test: it runs last."""
    items.sort(key=lambda item: Path(str(item.fspath)).name == "test_rbac.py")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cluster() -> AsyncIterator[ClusterEmulator]:
    async with ClusterEmulator() as emulator, kmock.Server(emulator):
        yield emulator


@pytest.fixture(scope="session")
def liveness_url() -> str:
    return f"http://127.0.0.1:{free_port()}/healthz"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def release(api: Api, helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Release:
    installed = Release(RELEASE, NAMESPACE, render(helm, RELEASE, NAMESPACE, TEST_VALUES,
                                                   tmp_path_factory.mktemp("values")))
    await install(api, installed)
    return installed


@pytest.fixture(scope="session")
def metrics_url() -> str:
    """The session operator's /metrics."""
    return f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture(scope="session")
def operator_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session operator's log (JSON lines)."""
    return tmp_path_factory.mktemp("operator") / f"{RELEASE}-0.log"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def operator_process(cluster: ClusterEmulator, release: Release, liveness_url: str, helm: Path,
                           operator_log: Path, metrics_url: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    workdir = operator_log.parent
    proc = start_pod(release, f"{RELEASE}-0", server=str(cluster.url).rstrip("/"), liveness_url=liveness_url,
                     workdir=workdir, helm=helm, metrics_port=int(metrics_url.split(":")[2].split("/")[0]))
    try:
        yield proc
    finally:
        await stop_pod(proc)
        if os.environ.get("OPERATOR_LOG"):
            sys.stderr.write(operator_log.read_text())


async def probe(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def operator(operator_process: subprocess.Popen[bytes], liveness_url: str) -> subprocess.Popen[bytes]:
    async def alive() -> bool:
        assert operator_process.poll() is None, f"the operator exited with {operator_process.returncode}"
        return await probe(liveness_url)

    await eventually(alive, timeout=60, what="the operator's liveness endpoint")
    return operator_process


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api(cluster: ClusterEmulator) -> AsyncIterator[Api]:
    client = Api(str(cluster.url))
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def env(api: Api, operator: subprocess.Popen[bytes]) -> AsyncIterator[Env]:
    """The release namespace (the operator serves no other); the test's Shops are deleted afterwards."""
    environment = Env(api=api, namespace=NAMESPACE, timeout=30, make_ready=emulated_ready,
                      make_orders_unready=emulated_orders_unready, ready_timeout=30)
    yield environment
    await environment.cleanup()
