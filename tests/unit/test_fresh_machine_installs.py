"""On a fresh Debian machine the scripts behind `make images` and the image tests install what they use.

A fake ``apt-get`` first on PATH records what it is asked to install (and, for debootstrap, puts a
failing stand-in on PATH), so nothing is installed here; the scripts are run as they are.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  *"{fail_once}"*) [ -e "{log}.failed" ] || {{ touch "{log}.failed"; exit 100; }} ;;
esac
case "$*" in
  install*debootstrap*) printf '#!/bin/sh\\nexit 1\\n' > "{bin}/debootstrap"; chmod +x "{bin}/debootstrap" ;;
esac
exit 0
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts install as root (or through sudo)")


def fake_apt(tmp_path: Path, fail_once: str = "never-fails") -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, fail_once=fail_once, bin=bin_dir))
    apt.chmod(0o755)
    # No /usr/sbin: debootstrap (installed there by Debian) is missing whatever this machine has.
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}
    return env, log


def need(env: dict[str, str], *pairs: str) -> subprocess.CompletedProcess[str]:
    script = f'source "{ROOT}/scripts/need.sh"; need_packages test "$@"'
    return subprocess.run(["bash", "-c", script, "need", *pairs], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def test_a_missing_command_is_installed_from_its_debian_package_with_a_message(tmp_path: Path) -> None:
    env, log = fake_apt(tmp_path)
    out = need(env, "microshop-no-such-tool=some-package", "bash=bash")
    assert out.returncode == 0, out.stderr
    assert "[test] installing some-package (Debian packages" in out.stderr
    assert log.read_text().splitlines() == ["install -y -q --no-install-recommends some-package"]


def test_nothing_is_installed_when_every_command_is_there(tmp_path: Path) -> None:
    env, log = fake_apt(tmp_path)
    out = need(env, "bash=bash", "sh=dash")
    assert out.returncode == 0 and out.stderr == ""
    assert not log.exists()


def test_stale_package_lists_are_updated_once_then_the_install_is_retried(tmp_path: Path) -> None:
    env, log = fake_apt(tmp_path, fail_once="install")
    out = need(env, "microshop-no-such-tool=some-package")
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == [
        "install -y -q --no-install-recommends some-package",
        "update -q",
        "install -y -q --no-install-recommends some-package",
    ]


def test_base_image_installs_debootstrap_when_it_is_missing(tmp_path: Path) -> None:
    env, log = fake_apt(tmp_path)
    env["DOCKER"] = "false"  # no engine: the script stops right after the install
    out = subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh"), "microshop-test/none:0"], env=env,
                         capture_output=True, text=True, timeout=30, check=False)
    assert "install -y -q --no-install-recommends debootstrap" in log.read_text()
    assert "[base-image] installing debootstrap" in out.stderr
    assert "no Docker engine answers to 'false'" in out.stderr and out.returncode == 1


@pytest.mark.parametrize(("args", "installs_prometheus"), [("--prometheus", True), ("--fresh", False)])
def test_make_dev_with_prometheus_has_make_infra_install_it(args: str, installs_prometheus: bool) -> None:
    out = subprocess.run(["make", "-n", "dev", f"ARGS={args}"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    infra = [line for line in out.stdout.splitlines() if "devtools.infra" in line]
    assert infra, out.stdout
    assert infra[0].rstrip().endswith("--prometheus") is installs_prometheus
