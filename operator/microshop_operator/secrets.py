"""The JWT signing key and first-admin Secrets: created once when missing, never overwritten."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microshop_operator.kube import Kind, Kube, KubeError

SECRET = Kind("v1", "Secret", "secrets")
JWT_KEY = "private.pem"  # the key the chart mounts for the customers service
ADMIN_PASSWORD_KEY = "password"  # noqa: S105 (a key name, not a password)
ADMIN_EMAIL_KEY = "email"


def ed25519_private_pem() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def jwt_secret_body(name: str, namespace: str, labels: Mapping[str, str],
                    owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [dict(owner)]},
        "data": {JWT_KEY: _b64(ed25519_private_pem())},
    }


def admin_secret_body(name: str, namespace: str, email: str, labels: Mapping[str, str],
                      owner: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels), "ownerReferences": [dict(owner)]},
        "data": {ADMIN_EMAIL_KEY: _b64(email.encode()),
                 ADMIN_PASSWORD_KEY: _b64(secrets.token_urlsafe(24).encode())},
    }


async def ensure_secret(kube: Kube, body: Mapping[str, Any]) -> bool:
    """Create the Secret unless one of that name exists (whoever made it). True when created now."""
    meta = body["metadata"]
    if await kube.get(SECRET, meta["namespace"], meta["name"]) is not None:
        return False
    try:
        await kube.create(SECRET, meta["namespace"], body)
    except KubeError as exc:
        if exc.status == 409:  # created between our read and write: theirs wins, never overwrite
            return False
        raise
    return True
