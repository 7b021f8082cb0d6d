"""`make images` builds both targets with no registry reachable; what is in (and not in) each image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.images.conftest import BuiltImages, docker_run

pytestmark = pytest.mark.timeout(1800)  # the first, cold build of a fresh machine includes the base image

SHOP_LIMIT_MB = 380


def inspect(docker: str, image: str) -> dict[str, object]:
    out = subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(out.stdout)[0]
    return result


def test_make_images_builds_both_targets_and_prints_their_sizes(images: BuiltImages, docker: str) -> None:
    print(f"\nimages: shop {images.sizes_mb['shop']} MB ({images.seconds['shop']} s), operator "
          f"{images.sizes_mb['operator']} MB ({images.seconds['operator']} s); {images.wall_seconds:.0f} s in all")
    assert "[images] client:" in images.output
    assert "[images] base:" in images.output or "using the local stand-in" in images.output
    for image in (images.shop, images.operator):
        assert inspect(docker, image)["Os"] == "linux"


def test_the_base_is_python_image_or_the_debian_stand_in(images: BuiltImages, docker: str) -> None:
    """With no registry (this machine), the build says so and uses the debootstrap-built stand-in."""
    pulled = subprocess.run([docker, "image", "inspect", "python:3.11-slim-bookworm"],
                            capture_output=True, timeout=60, check=False).returncode == 0
    if not pulled:
        assert "cannot pull python:3.11-slim-bookworm" in images.output
        assert "using the local stand-in microshop-base/python:3.11-bookworm" in images.output
        base = inspect(docker, "microshop-base/python:3.11-bookworm")
        assert "scripts/base-image.sh" in str(base.get("Comment", ""))
        out = docker_run(docker, "microshop-base/python:3.11-bookworm", "python3", "-c",
                         "import ssl, sys; print(sys.version_info[:2], ssl.OPENSSL_VERSION)")
        assert out.returncode == 0 and "(3, 11)" in out.stdout, out.stderr


def test_shop_image_is_smaller_than_380_mb(images: BuiltImages) -> None:
    assert images.sizes_mb["shop"] < SHOP_LIMIT_MB, images.sizes_mb


def test_each_image_carries_only_what_it_runs(images: BuiltImages, docker: str) -> None:
    probe = ("import importlib.util as u; "
             "print(*[m for m in ('kubernetes', 'kopf', 'litestar', 'faststream', 'pytest', 'secantus', 'mypy') "
             "if u.find_spec(m)])")
    shop = docker_run(docker, "--entrypoint", "python", images.shop, "-c", probe)
    assert shop.returncode == 0, shop.stderr
    assert shop.stdout.split() == ["litestar", "faststream"], "the shop image: no operator or dev packages"
    operator = docker_run(docker, "--entrypoint", "python", images.operator, "-c", probe)
    assert operator.returncode == 0, operator.stderr
    assert {"kubernetes", "kopf"} <= set(operator.stdout.split())
    assert not {"pytest", "secantus", "mypy"} & set(operator.stdout.split())


def test_images_run_as_the_non_root_user(images: BuiltImages, docker: str) -> None:
    for image in (images.shop, images.operator):
        config = inspect(docker, image)["Config"]
        assert isinstance(config, dict)
        assert config["User"] == "10001:10001"
        assert not any(e.startswith(("SSL_CERT", "REQUESTS_CA", "CURL_CA")) for e in config["Env"]), config["Env"]


def test_the_ca_bundle_secret_is_in_no_layer(images: BuiltImages, docker: str) -> None:
    """The CA bundle given as the BuildKit secret (the host's SSL_CERT_FILE) is in neither image."""
    bundle = Path(os.environ.get("CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or "")
    if not bundle.is_file():
        pytest.skip("no CA bundle was passed to the build (SSL_CERT_FILE unset)")
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    size = bundle.stat().st_size
    # Hash every file of the bundle's exact size in the image (a handful), and look for /run/secrets leftovers.
    finder = (
        "import hashlib, os, sys\n"
        "size, hits = int(sys.argv[1]), []\n"
        "for top, dirs, files in os.walk('/'):\n"
        "    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ('/proc', '/sys', '/dev')]\n"
        "    for f in files:\n"
        "        p = os.path.join(top, f)\n"
        "        try:\n"
        "            if not os.path.islink(p) and os.path.getsize(p) == size:\n"
        "                hits.append(hashlib.sha256(open(p, 'rb').read()).hexdigest() + ' ' + p)\n"
        "        except OSError:\n"
        "            pass\n"
        "print('\\n'.join(hits))\n"
        "print('secrets:', os.listdir('/run/secrets') if os.path.isdir('/run/secrets') else [])\n"
    )
    history = subprocess.run([docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", images.shop],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert str(bundle) not in history
    for image in (images.shop, images.operator):
        out = docker_run(docker, "--user", "0", "--entrypoint", "python", image, "-c", finder, str(size))
        assert out.returncode == 0, out.stderr
        leaked = [line for line in out.stdout.splitlines() if line.startswith(digest)]
        base_copy = [line for line in leaked if line.endswith("/etc/ssl/certs/ca-certificates.crt")]
        if base_copy:
            pytest.skip("the base image's own CA bundle is byte-identical to the host's: nothing to tell apart")
        assert not leaked, f"{image} holds the build's CA bundle: {leaked}"
        assert "secrets: []" in out.stdout


IMAGE_CODE = ("import hashlib, json, pathlib, sys; site = pathlib.Path(sys.argv[1]); "
              "print(json.dumps({str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest() "
              "for pkg in sys.argv[2:] for p in sorted((site / pkg).rglob('*.py'))}))")


@pytest.mark.parametrize("target", ["shop", "operator"])
def test_each_image_runs_this_trees_code_not_a_cached_build(images: BuiltImages, docker: str, target: str) -> None:
    """Every module of the tree's packages is in the image byte for byte: a change is never lost to a cached wheel
    (uv keys its build of the project on pyproject.toml, not on the sources; the Dockerfile reinstalls it)."""
    root = Path(__file__).resolve().parents[2]
    packages = {p.parent.name: p.parent for p in [*root.glob("services/*/__init__.py"),
                                                  root / "operator" / "microshop_operator" / "__init__.py"]}
    tree = {str(path.relative_to(src.parent)): hashlib.sha256(path.read_bytes()).hexdigest()
            for src in packages.values() for path in sorted(src.rglob("*.py"))
            if "__pycache__" not in path.parts}
    image = images.shop if target == "shop" else images.operator
    out = docker_run(docker, "--entrypoint", "python", image, "-c", IMAGE_CODE,
                     "/opt/venv/lib/python3.11/site-packages", *sorted(packages))
    assert out.returncode == 0, out.stderr
    installed = json.loads(out.stdout)
    stale = sorted(name for name in tree if installed.get(name) != tree[name])
    assert not stale, f"the {target} image's copy differs from the tree: {stale[:10]}"
