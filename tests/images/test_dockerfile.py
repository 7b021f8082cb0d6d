"""The Dockerfile's rules (no Docker engine needed): the only image ever pulled is PYTHON_IMAGE, no frontend
image, uv and helm from the project's pinned PyPI installers, the CA bundle only as a BuildKit secret."""

from __future__ import annotations

import re

from tests.charts.test_images import build_context
from tests.images.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Stage name → its text (from its FROM line to the next)."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)
    out = {}
    for part in parts[1:]:
        head = part.splitlines()[0].split()
        assert len(head) == 4 and head[2] == "AS", f"every stage is named: {part.splitlines()[0]}"
        out[head[3]] = part
    return out


def run_steps(text: str) -> list[str]:
    """RUN instructions with their continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line.startswith("RUN ")]


def test_no_syntax_directive_so_no_frontend_image_is_pulled() -> None:
    assert not re.search(r"^#\s*syntax\s*=", DOCKERFILE, re.M | re.I)
    assert not re.search(r"^#\s*(check|escape)\s*=", DOCKERFILE, re.M | re.I), "no parser directives at all"


def test_the_only_image_pulled_is_python_image() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
    seen: list[str] = []
    for name, text in stages().items():
        base = text.split()[1]
        assert base == "${PYTHON_IMAGE}" or base in seen, f"stage {name} starts from {base}"
        seen.append(name)
    for source in re.findall(r"COPY --from=(\S+)", DOCKERFILE):
        assert source in seen, f"COPY --from={source} would pull an image"
    assert "ghcr.io" not in DOCKERFILE and "docker.io" not in DOCKERFILE


def test_uv_and_helm_come_from_the_projects_pinned_installers() -> None:
    s = stages()
    assert "COPY scripts/install_uv.py" in s["uv"] and "install_uv.py" in "".join(run_steps(s["uv"]))
    assert "COPY devtools/helm.py" in s["helm"] and "devtools/helm.py" in "".join(run_steps(s["helm"]))
    # One pin for dev machines and images: no second copy of a version or digest in the Dockerfile.
    from devtools.helm import HELM_SHA256

    uv_pin = re.search(r'^UV_VERSION = "([^"]+)"$', (ROOT / "scripts" / "install_uv.py").read_text(), re.M)
    assert uv_pin is not None
    UV_VERSION = uv_pin.group(1)
    assert HELM_SHA256 not in DOCKERFILE and "get.helm.sh" not in DOCKERFILE
    assert UV_VERSION not in DOCKERFILE
    context = build_context(ROOT)
    assert "scripts/install_uv.py" in context and "devtools/helm.py" in context


def test_downloads_get_the_ca_secret_and_no_layer_keeps_it() -> None:
    downloading = [step for step in run_steps(DOCKERFILE)
                   if re.search(r"install_uv\.py|devtools/helm\.py|uv sync|uv pip install", step)]
    # uv, helm, shop deps + project, operator deps + project, SecantusDB (compose.host.yaml)
    assert len(downloading) == 7, downloading
    for step in downloading:
        assert "--mount=type=secret,id=ca" in step, step
        assert 'export SSL_CERT_FILE=/run/secrets/ca' in step, step
    assert not re.search(r"^(ENV|ARG)\b.*(SSL_CERT|CA_BUNDLE|REQUESTS_CA|CURL_CA)", DOCKERFILE, re.M)
    assert not re.search(r"^(COPY|ADD)\b.*(\.crt|\.pem|certs)", DOCKERFILE, re.M)


def test_the_shop_image_gets_no_operator_packages() -> None:
    s = stages()
    assert "COPY --from=deps-shop /opt/venv /opt/venv" in s["shop"]
    assert "COPY --from=deps-operator /opt/venv /opt/venv" in s["operator"]
    shop_sync = next(step for step in run_steps(s["deps-shop"]) if "uv sync" in step)
    assert "--group" not in shop_sync and "--all-groups" not in shop_sync
    operator_sync = next(step for step in run_steps(s["deps-operator"]) if "uv sync" in step)
    assert "--group operator" in operator_sync
    import tomllib

    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert {d.split(">")[0] for d in groups["operator"]} == {"kopf", "kubernetes", "urllib3"}  # kube.py imports urllib3
    assert "--no-install-package kubernetes" in shop_sync and "--no-install-package kopf" in shop_sync


def test_final_stages() -> None:
    s = stages()
    assert not re.search(r"^HEALTHCHECK", DOCKERFILE, re.M), "Kubernetes probes, not a Docker HEALTHCHECK"
    for target in ("shop", "operator", "secantus"):
        assert "USER 10001:10001" in s[target]
        assert "apt-get" not in s[target] and "gcc" not in s[target]
    assert 'ENTRYPOINT ["python", "-m"]' in s["shop"]
    assert 'ENTRYPOINT ["python", "-m", "microshop_operator"]' in s["operator"]
    assert list(s)[-1] == "shop", "the shop image is the default (last) target"
    assert "uv sync --frozen --no-dev --no-install-project" in DOCKERFILE
