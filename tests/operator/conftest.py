"""The operator under kopf's real runtime (``python -m microshop_operator``) against an extended kmock emulator.

One emulator and one operator process serve the whole module; each test works in its own Shop.
kopf's intervals are shortened by environment (resync 1s, backoff 0.5s) so that drift repair and
retries are observable in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import kmock
import pytest
import pytest_asyncio
import yaml

from devtools.helm import ensure_helm
from tests.operator.api import Api, eventually
from tests.operator.emulator import ClusterEmulator
from tests.operator.scenarios import Env, emulated_orders_unready, emulated_ready

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cluster() -> AsyncIterator[ClusterEmulator]:
    async with ClusterEmulator() as emulator, kmock.Server(emulator):
        yield emulator


@pytest.fixture(scope="session")
def kubeconfig(cluster: ClusterEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(cluster.url).rstrip("/")}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
    }))
    return path


@pytest.fixture(scope="session")
def liveness_url() -> str:
    return f"http://127.0.0.1:{free_port()}/healthz"


@pytest.fixture(scope="session")
def operator_process(kubeconfig: Path, liveness_url: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "MICROSHOP_OPERATOR_CHART": str(ROOT / "charts" / "microshop"),
        "MICROSHOP_OPERATOR_HELM": str(ensure_helm()),
        "MICROSHOP_OPERATOR_RESYNC_SECONDS": "1",
        "MICROSHOP_OPERATOR_BACKOFF_SECONDS": "0.5",
        "MICROSHOP_OPERATOR_BACKOFF_MAX_SECONDS": "2",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "microshop_operator", "--standalone", "--all-namespaces",
             f"--liveness={liveness_url}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("OPERATOR_LOG"):
            sys.stderr.write(log_path.read_text())


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
    """A fresh namespace; the test's Shops are deleted afterwards so that resyncs do not pile up."""
    environment = Env(api=api, namespace=f"t-{uuid.uuid4().hex[:6]}", timeout=30, make_ready=emulated_ready,
                      make_orders_unready=emulated_orders_unready, ready_timeout=30)
    yield environment
    await environment.cleanup()
