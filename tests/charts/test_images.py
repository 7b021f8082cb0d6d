"""Images, build context and skaffold: what the charts run is what skaffold builds, and the Docker
build context (computed from .dockerignore with Docker's own matching rules) carries no tests,
caches or VCS files. The Dockerfile's own rules and the built images: tests/images."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.charts.conftest import OPERATOR_CHART, ROOT, SHOP_CHART, Render

# Skaffold's published JSON schema for this apiVersion (vendored: tests never read outside the repository).
SKAFFOLD_SCHEMA = ROOT / "tests" / "charts" / "schemas" / "skaffold-v4beta14.json"


# ---- .dockerignore, as Docker/BuildKit's patternmatcher reads it ----
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` and `?` stay within a path segment, `**` spans segments."""
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
            continue
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((exclude, _pattern_regex(pattern)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Last matching rule wins; a rule matching a parent directory matches everything under it."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exclude, regex in rules:
        if any(regex.match(c) for c in candidates):
            result = exclude
    return result


# Big local-only trees: checked by rule, not walked.
UNWALKED = (".venv", ".git", ".tools", ".dev", ".mypy_cache", ".ruff_cache", ".pytest_cache")


@functools.lru_cache(maxsize=1)
def build_context(root: Path) -> tuple[str, ...]:
    rules = dockerignore_rules((root / ".dockerignore").read_text())
    for top in UNWALKED:
        assert excluded(f"{top}/some/file", rules), f"{top}/ must be outside the build context"
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in UNWALKED]
            rel_dir = ""
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not excluded(rel, rules):
                files.append(rel)
    return tuple(sorted(files))


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = dockerignore_rules("*\n!services/\n**/__pycache__\n!services/keep/__pycache__/x.pyc\n")
    assert excluded("README.md", rules)
    assert not excluded("services/gateway/app.py", rules)
    assert excluded("services/gateway/__pycache__/app.cpython-311.pyc", rules)
    assert not excluded("services/keep/__pycache__/x.pyc", rules)
    assert excluded("servicesX/a.py", rules)


def test_build_context_holds_sources_and_nothing_else() -> None:
    context = build_context(ROOT)
    assert "pyproject.toml" in context
    assert "uv.lock" in context
    assert "services/shopkit/settings.py" in context
    assert "charts/microshop/values.yaml" in context
    forbidden = re.compile(
        r"(^|/)(tests?|__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.git|\.venv|\.dev|\.tools|docs)(/|$)"
        r"|\.py[cod]$|(^|/)test_[^/]*\.py$|(^|/)conftest\.py$")
    leaked = [path for path in context if forbidden.search(path)]
    assert not leaked, f"the Docker build context would carry {leaked[:20]}"


def test_dockerfile_copies_only_what_the_context_keeps() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    context = build_context(ROOT)
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.M):
        prefix = source.rstrip("/")
        assert any(p == prefix or p.startswith(prefix + "/") for p in context), f"COPY {source}: not in context"


def _skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return config


def test_skaffold_config_validates() -> None:
    skaffold = shutil.which("skaffold")
    if skaffold:
        out = subprocess.run([skaffold, "diagnose", "--yaml-only", "-f", str(ROOT / "skaffold.yaml")],
                             capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        return
    schema = json.loads(SKAFFOLD_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(_skaffold())
    # The schema is lenient about unknown keys in places; these must be exactly right.
    config = _skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14"
    assert config["resourceSelector"]["allow"] == [{"groupKind": "Shop.microshop.dev", "image": [".spec.image.*"]}]
    profiles = {p["name"]: p for p in config["profiles"]}
    release = profiles["direct"]["deploy"]["helm"]["releases"][0]
    assert release["chartPath"] == "charts/microshop"
    assert release["setValueTemplates"]["image.repository"] == "{{.IMAGE_REPO_microshop}}"


def test_skaffold_paths_exist() -> None:
    config = _skaffold()
    for artifact in config["build"]["artifacts"]:
        # Built by the same script as `make images`, one target each (tests/images/test_dockerfile.py).
        custom = artifact["custom"]
        assert (ROOT / artifact["context"] / custom["dependencies"]["dockerfile"]["path"]).is_file()
        target = re.fullmatch(r"TARGETS=(\w+) bash scripts/build-images\.sh", custom["buildCommand"])
        assert target is not None, custom["buildCommand"]
        assert re.search(rf"^FROM \S+ AS {target.group(1)}$", (ROOT / "Dockerfile").read_text(), re.M)
    for path in config["manifests"]["rawYaml"]:
        assert (ROOT / path).is_file()
    for release in config["deploy"]["helm"]["releases"]:
        assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()


def _repository(image: str) -> str:
    image = image.split("@")[0]
    last = image.rsplit("/", 1)[-1]
    return image.rsplit(":", 1)[0] if ":" in last else image


def test_every_project_image_is_built_by_skaffold(render: Render) -> None:
    built = {artifact["image"] for artifact in _skaffold()["build"]["artifacts"]}
    images: set[str] = set()
    for chart in (SHOP_CHART, OPERATOR_CHART):
        for obj in render(chart):
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            images |= {c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])}
    shop = yaml.safe_load((ROOT / "examples" / "shop.yaml").read_text())
    images.add(f"{shop['spec']['image']['repository']}:{shop['spec']['image']['tag']}")
    infrastructure = {yaml.safe_load((SHOP_CHART / "values.yaml").read_text())[k]["image"]
                      for k in ("mongodb", "redis", "rabbitmq")}
    ours = {_repository(i) for i in images - infrastructure}
    assert ours == built, f"images the charts run but skaffold does not build: {ours - built}"
    # Third-party images are official images pinned to a version, never :latest.
    for image in infrastructure:
        assert re.fullmatch(r"(mongo|redis|rabbitmq):\d+(\.\d+)*", image), image


def test_example_shop_mirrors_the_chart_values(helm: Path, tmp_path: Path) -> None:
    """The example Shop's spec is valid chart values (the operator passes it through)."""
    from tests.charts.conftest import run_helm

    spec = yaml.safe_load((ROOT / "examples" / "shop.yaml").read_text())["spec"]
    out = run_helm(helm, "template", "microshop", str(SHOP_CHART), values=spec, tmp=tmp_path)
    assert out.returncode == 0, out.stderr


def test_example_shop_validates_against_the_crd() -> None:
    crd_path = OPERATOR_CHART / "crds" / "shops.microshop.dev.yaml"
    assert crd_path.is_file(), f"{crd_path} is the one copy of the Shop CRD and must exist"
    crd = yaml.safe_load(crd_path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    shop = yaml.safe_load((ROOT / "examples" / "shop.yaml").read_text())
    assert shop["apiVersion"] == "microshop.dev/v1alpha1"
    assert shop["kind"] == "Shop"
    schema = version["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(schema).validate(with_defaults(schema, shop))


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply OpenAPI defaults the way the API server does before it validates (structural defaulting)."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    out = dict(value)
    for name, sub in schema["properties"].items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = with_defaults(sub, out[name])
    return out
