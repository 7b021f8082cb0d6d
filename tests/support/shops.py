"""Which shop the integration tier runs: processes of this checkout, or containers of an image.

``MICROSHOP_TEST_IMAGE=microshop:<tag>`` is the one switch: every shop the tier starts (the session
shop and the modules' own) becomes a :class:`devtools.containers.ContainerShop` of that image, run as
the chart runs it on the host network, so the whole integration suite tests the image.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator

import pytest

from devtools.shop import LocalShop


def shop_factory() -> Callable[..., LocalShop]:
    """LocalShop, or ContainerShop of the image named by ``MICROSHOP_TEST_IMAGE``."""
    image = os.environ.get("MICROSHOP_TEST_IMAGE", "").strip()
    if not image:
        return LocalShop
    from devtools.containers import ContainerShop, docker_client

    docker, why = docker_client()
    if docker is None:
        pytest.exit(f"MICROSHOP_TEST_IMAGE={image}: {why}", returncode=3)
    return functools.partial(ContainerShop, image=image, docker=docker)


@contextlib.contextmanager
def running(shop: LocalShop, timeout: float = 90.0) -> Iterator[LocalShop]:
    """Start ``shop``, yield it, stop it; when it fails to start, each process's last lines go to stderr."""
    try:
        try:
            shop.start(timeout=timeout)
        except BaseException:
            for name, proc in shop.procs.items():
                print(f"--- {name}", *proc.lines[-30:], sep="\n", file=sys.stderr)
            raise
        yield shop
    finally:
        shop.stop()


def dump(shop: LocalShop) -> None:
    """Each process's warnings and errors (and its last lines), for a failure's report."""
    for name, proc in shop.procs.items():
        notable = [line for line in proc.lines if any(w in line for w in ("WARNING", "ERROR", "Error", "Traceback"))]
        print(f"--- {name}", *notable[-40:], "...", *proc.lines[-15:], sep="\n", file=sys.stderr)
