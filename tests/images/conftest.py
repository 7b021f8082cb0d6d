"""The image tier: the Dockerfile's rules, `make images` itself, and the built images run as the chart runs them.

Tests that need a Docker engine use the ``docker`` fixture: where no engine answers they skip, and
the reason is printed at the end of the run (never a silent skip). ``.ci/run`` starts an engine
where it can (scripts/docker-engine.sh).

The images are built once per session by scripts/build-images.sh (what ``make images`` runs),
tagged per checkout so that two checkouts on one machine do not overwrite each other's images;
BuildKit's cache makes a rebuild of an unchanged tree take seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import infra
from devtools.containers import docker_client
from devtools.helm import ensure_helm
from tests.support.session import session_key_file, session_namespace

ROOT = Path(__file__).resolve().parents[2]
SHOP_CHART = ROOT / "charts" / "microshop"
BUILD_SCRIPT = ROOT / "scripts" / "build-images.sh"
# One tag per checkout (and per user): concurrent sessions of other checkouts keep their own images.
TAG = "test-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]

_docker: tuple[str | None, str] | None = None


def docker_or_reason() -> tuple[str | None, str]:
    global _docker
    if _docker is None:
        _docker = docker_client()
    return _docker


@pytest.fixture(scope="session")
def helm() -> Path:
    return ensure_helm()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def rabbitmq_and_redis() -> None:
    """The host's RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379), for the tests that run the shop."""
    if not infra.ensure_all():
        pytest.fail("RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are required; see the messages above.")


@pytest.fixture(scope="session")
def namespace(rabbitmq_and_redis: None) -> Iterator[str]:
    """This session's prefix for exchange, queue and Redis key names; its queues are deleted at the end."""
    with session_namespace("i") as prefix:
        yield prefix


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_key_file(tmp_path_factory)


@pytest.fixture(scope="session")
def docker() -> str:
    client, why = docker_or_reason()
    if client is None:
        pytest.skip(f"image tests need a Docker engine: {why}")
    return client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "tests/images" in str(r.nodeid)]
    if skipped and docker_or_reason()[0] is None:
        terminalreporter.write_line(
            f"IMAGE TESTS SKIPPED ({len(skipped)}): {docker_or_reason()[1]} — start one with "
            "scripts/docker-engine.sh (as root) or set DOCKER_HOST", yellow=True, bold=True)


@dataclass(frozen=True)
class BuiltImages:
    shop: str
    operator: str
    sizes_mb: dict[str, int]
    seconds: dict[str, int]
    output: str
    wall_seconds: float


def run_build(env: dict[str, str], timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BUILD_SCRIPT)], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def images(docker: str) -> BuiltImages:
    """Both images, built by `make images`'s script; the first cold build (base image included) is slow."""
    started = time.monotonic()
    out = run_build({"IMAGE_TAG": TAG})
    output = out.stdout + out.stderr
    if out.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed ({out.returncode}):\n{output[-6000:]}")
    lines = re.findall(r"^image (\S+) (\d+) MB \(built in (\d+) s\)$", out.stdout, re.M)
    built = {name: (int(mb), int(s)) for name, mb, s in lines}
    shop, operator = f"microshop:{TAG}", f"microshop-operator:{TAG}"
    assert set(built) == {shop, operator}, output[-3000:]
    return BuiltImages(shop=shop, operator=operator,
                       sizes_mb={"shop": built[shop][0], "operator": built[operator][0]},
                       seconds={"shop": built[shop][1], "operator": built[operator][1]},
                       output=output, wall_seconds=time.monotonic() - started)


def docker_run(docker: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` with no network at all (these checks need none)."""
    return subprocess.run([docker, "run", "--rm", "--network", "none", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
