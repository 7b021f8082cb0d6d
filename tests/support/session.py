"""Session resources shared by the tiers that run real services (integration, images)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker_cleanup import delete_namespace
from devtools.shop import ensure_private_key

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@contextlib.contextmanager
def session_namespace(letter: str) -> Iterator[str]:
    """A fresh prefix for exchange, queue and Redis key names; its queues are deleted afterwards."""
    prefix = f"{letter}{uuid.uuid4().hex[:8]}."
    try:
        yield prefix
    finally:
        delete_namespace(AMQP_URL, prefix)


def session_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ed25519 signing key for the shop's customers service, made once per session."""
    return ensure_private_key(tmp_path_factory.mktemp("keys") / "jwt-private.pem")
