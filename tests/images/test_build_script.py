"""scripts/build-images.sh picks a docker client that can build with BuildKit, or says what is missing.

Fake clients (small shell scripts) stand in for the Docker 28 client without buildx, Debian's 20.10
client and a client with buildx; no engine is needed.
"""

from __future__ import annotations

from pathlib import Path

from tests.images.conftest import run_build

FAKE = """#!/bin/sh
# fake docker client: version {client}, buildx {buildx}, engine {server}
case "$*" in
  "buildx version") [ "{buildx}" = yes ] && {{ echo "github.com/docker/buildx v0.20.0"; exit 0; }}; exit 1 ;;
  "version --format {{{{.Client.Version}}}}") echo "{client}"; [ -n "{server}" ] || exit 1 ;;
  "version --format {{{{.Server.Version}}}}") [ -n "{server}" ] && {{ echo "{server}"; exit 0; }}
     echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1 ;;
  *) echo "fake docker: $*" >&2; exit 1 ;;
esac
"""


def fake_client(tmp_path: Path, name: str, client: str, buildx: bool = False, server: str = "") -> Path:
    path = tmp_path / name / "docker"
    path.parent.mkdir()
    path.write_text(FAKE.format(client=client, buildx="yes" if buildx else "no", server=server))
    path.chmod(0o755)
    return path


def test_a_docker_23_plus_client_without_buildx_is_refused_with_what_to_install(tmp_path: Path) -> None:
    docker28 = fake_client(tmp_path, "d28", "28.2.2")
    out = run_build({"DOCKER_CANDIDATES": str(docker28)}, timeout=60)
    assert out.returncode == 1
    assert f"{docker28}: Docker 28.2.2 client without the buildx plugin" in out.stderr
    assert "docker-buildx-plugin" in out.stderr and "apt-get install docker.io" in out.stderr


def test_debians_20_10_client_is_chosen_after_a_28_client_without_buildx(tmp_path: Path) -> None:
    docker28 = fake_client(tmp_path, "d28", "28.2.2")
    docker20 = fake_client(tmp_path, "d20", "20.10.24+dfsg1")  # no engine answers either
    out = run_build({"DOCKER_CANDIDATES": f"{docker28} {docker20}"}, timeout=60)
    assert out.returncode == 1
    assert f"client: {docker20} (Docker 20.10.24+dfsg1 client, DOCKER_BUILDKIT=1)" in out.stderr
    assert "no Docker engine answers" in out.stderr and "scripts/docker-engine.sh" in out.stderr


def test_a_client_with_buildx_is_used_through_buildx(tmp_path: Path) -> None:
    buildx = fake_client(tmp_path, "bx", "28.2.2", buildx=True, server="19.03.1")
    out = run_build({"DOCKER_CANDIDATES": str(buildx)}, timeout=60)
    assert f"client: {buildx} (Docker 28.2.2 client, buildx)" in out.stderr
    assert "Docker engine 19.03.1 is too old: 20.10 or later (with BuildKit) is needed" in out.stderr
    assert out.returncode == 1


def test_no_client_at_all(tmp_path: Path) -> None:
    out = run_build({"DOCKER_CANDIDATES": str(tmp_path / "missing" / "docker")}, timeout=60)
    assert out.returncode == 1
    assert "no docker client is installed" in out.stderr
