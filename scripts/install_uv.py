#!/usr/bin/env python3
"""Print the path of a usable ``uv``; install a pinned one into .tools/ from PyPI when none is found.

Standard library only, so it works on a fresh Debian/Ubuntu box where pip may be missing or
"externally managed": the uv wheel is downloaded from PyPI, its SHA-256 checked against
PyPI's published digest, and the binary extracted.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.8"
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / ".tools" / f"uv-{UV_VERSION}" / "uv"


def say(msg: str) -> None:
    print(f"[setup] {msg}", file=sys.stderr, flush=True)


def wheel_tag() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine)
    if sys.platform != "linux" or arch is None:
        raise SystemExit(f"no bundled uv for {sys.platform}/{machine}: install uv (https://docs.astral.sh/uv/)")
    return f"manylinux_2_17_{arch}"


def install() -> Path:
    tag = wheel_tag()
    say(f"uv not found: installing uv {UV_VERSION} from PyPI into {TARGET.parent}")
    index = os.environ.get("UV_INSTALL_INDEX", "https://pypi.org/simple")
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(f"{index}/uv/", headers=accept)  # noqa: S310 - an https index
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        listing = json.load(resp)
    files = [
        f for f in listing["files"]
        if f["filename"].startswith(f"uv-{UV_VERSION}-") and f["filename"].endswith(".whl") and tag in f["filename"]
    ]
    if not files:
        raise SystemExit(f"PyPI has no uv {UV_VERSION} wheel for {tag}")
    wheel = files[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel["url"], timeout=300) as resp, path.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != wheel["hashes"]["sha256"]:
            raise SystemExit(f"uv wheel checksum mismatch: {digest} != {wheel['hashes']['sha256']}")
        with zipfile.ZipFile(path) as zf:
            member = next(n for n in zf.namelist() if n.endswith("/scripts/uv"))
            TARGET.parent.mkdir(parents=True, exist_ok=True)
            staging = TARGET.with_suffix(".tmp")
            staging.write_bytes(zf.read(member))
    staging.chmod(staging.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    staging.replace(TARGET)
    return TARGET


def main() -> None:
    found = shutil.which("uv")
    if found:
        print(found)
        return
    print(TARGET if TARGET.exists() else install())


if __name__ == "__main__":
    main()
