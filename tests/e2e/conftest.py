"""The operator scenarios against a real cluster (``make e2e`` on kind). Skipped without ``KUBECONFIG``.

The cluster must already run the CRD, the operator (charts/microshop-operator, default values: it
serves its release namespace, ``OPERATOR_NAMESPACE``) and have the microshop image loaded; ``make e2e``
does all of that. The tests create their Shops in that namespace and talk to the API through
``kubectl proxy``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.operator.api import Api
from tests.operator.scenarios import Env

E2E_TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "120"))
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "600"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("KUBECONFIG"):
        for item in items:
            if "tests/e2e" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="KUBECONFIG not set"))


@pytest.fixture(scope="session")
def proxy_url() -> Iterator[str]:
    proc = subprocess.Popen(["kubectl", "proxy", "--port=0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Starting to serve on 127.0.0.1:PORT"
        match = re.search(r"(\d+\.\d+\.\d+\.\d+):(\d+)", line)
        assert match, f"kubectl proxy did not start: {line!r}"
        yield f"http://{match.group(1)}:{match.group(2)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest_asyncio.fixture(loop_scope="session")
async def env(proxy_url: str) -> AsyncIterator[Env]:
    api = Api(proxy_url)
    namespace = os.environ.get("OPERATOR_NAMESPACE", "microshop-system")  # the namespaced install serves only it

    async def real_ready(api: Api, namespace: str, shop: str) -> None:
        return None  # the real controllers report readiness once the pods run

    async def orders_unready(api: Api, namespace: str, shop: str) -> None:
        # A tag that cannot be pulled: the new ReplicaSet never becomes ready, the rollout stalls.
        await api.merge(f"/apis/microshop.dev/v1alpha1/namespaces/{namespace}/shops/{shop}",
                        {"spec": {"services": {"orders": {"image": {"tag": "does-not-exist"}}}}})

    environment = Env(api=api, namespace=namespace, timeout=E2E_TIMEOUT, make_ready=real_ready,
                      make_orders_unready=orders_unready, ready_timeout=READY_TIMEOUT,
                      base_spec={"image": {"tag": os.environ.get("E2E_IMAGE_TAG", "e2e"), "pullPolicy": "Never"}})
    try:
        yield environment
    finally:
        await environment.cleanup()
        await api.close()
        await asyncio.sleep(0)
