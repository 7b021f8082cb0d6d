"""The Secrets the chart expects but cannot make under ``helm template``: created once when missing, never
overwritten.

* ``<shop>-jwt``: the customers service's Ed25519 signing key;
* ``<shop>-admin``: the first admin's email and password;
* ``<shop>-infra``: the managed MongoDB/Redis/RabbitMQ credentials (only when one of them is managed).
  MongoDB and RabbitMQ accept them only on an empty volume, so this Secret lives as long as the
  volumes, not the Shop: no owner reference (the PVCs have none either), deleted with the PVCs when
  the Shop asks for that (``spec.deletion``), reused by a Shop of the same name otherwise.

An existing Secret is never changed, with one exception: an infra Secret this operator made for this
Shop (its labels say so) that lacks keys a newer chart references (each service's own MongoDB and
RabbitMQ password came later) gets the missing keys generated; its existing values stay. Any other
Secret that lacks a key the chart references fails the reconcile with a message that names the key
instead of rolling out pods that cannot start.
"""

from __future__ import annotations

import base64
import logging
import secrets
import string
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from microshop_operator.kube import Kind, Kube, KubeError
from microshop_operator.values import TOPOLOGY, Topology, users_of

log = logging.getLogger(__name__)

SECRET = Kind("v1", "Secret", "secrets")
JWT_KEY = "private.pem"  # the key the chart mounts for the customers service
ADMIN_PASSWORD_KEY = "password"  # noqa: S105 (a key name, not a password)
ADMIN_EMAIL_KEY = "email"
# The infra Secret's keys (charts/microshop/templates/secrets.yaml renders the same) and their lengths.
# Passwords are alphanumeric: they go into the services' connection URLs unescaped. The MongoDB keyfile
# must be 6-1024 characters of the base64 alphabet; alphanumeric is a subset.
# Besides the admin passwords, each service has its own MongoDB / RabbitMQ user and password
# (``<kind>-password-<service>``; the services of the chart's topology that use the component).


def infra_keys_by_component(topology: Topology = TOPOLOGY) -> dict[str, tuple[str, ...]]:
    """What each managed component's pods reference."""
    return {
        "mongodb": ("mongodb-password", "mongodb-keyfile",
                    *(f"mongodb-password-{s}" for s in users_of("mongodb", topology))),
        "redis": ("redis-password",),
        "rabbitmq": ("rabbitmq-password", *(f"rabbitmq-password-{s}" for s in users_of("rabbitmq", topology))),
    }


DATABASE_USERS = users_of("mongodb")
BROKER_USERS = users_of("rabbitmq")
INFRA_KEYS_BY_COMPONENT = infra_keys_by_component()
INFRA_KEY_LENGTHS = {key: 756 if key == "mongodb-keyfile" else 32
                     for keys in INFRA_KEYS_BY_COMPONENT.values() for key in keys}
# What a component's pods reference only when it runs as a cluster (spec.<kind>.replicas > 1): the Erlang
# cookie RabbitMQ's nodes share (a single node makes its own). Added to the Secret when a Shop asks for one.
CLUSTER_KEYS_BY_COMPONENT = {"rabbitmq": ("rabbitmq-erlang-cookie",)}
CLUSTER_KEY_LENGTHS = {key: 32 for keys in CLUSTER_KEYS_BY_COMPONENT.values() for key in keys}
_ALPHANUMERIC = string.ascii_letters + string.digits


class IncompleteSecret(Exception):
    """An existing Secret lacks a key the chart references (the operator will not add it)."""


def ed25519_private_pem() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def random_alphanumeric(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


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


def infra_secret_body(name: str, namespace: str, labels: Mapping[str, str],
                      clustered: Iterable[str] = ()) -> dict[str, Any]:
    """No owner reference: garbage collection must not take the credentials of volumes that stay.

    ``clustered``: the components that run as clusters, whose extra keys (CLUSTER_KEYS_BY_COMPONENT) it gets too.
    """
    lengths = {**INFRA_KEY_LENGTHS, **{key: CLUSTER_KEY_LENGTHS[key] for component in clustered
                                       for key in CLUSTER_KEYS_BY_COMPONENT.get(component, ())}}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "data": {key: _b64(random_alphanumeric(length).encode()) for key, length in lengths.items()},
    }


def infra_keys(managed: Iterable[str], clustered: Iterable[str] = ()) -> tuple[str, ...]:
    """The infra Secret's keys that the pods of these managed components (``clustered``: as clusters) reference."""
    clustered = set(clustered)
    return tuple(key for component in managed for key in (
        *INFRA_KEYS_BY_COMPONENT[component],
        *(CLUSTER_KEYS_BY_COMPONENT.get(component, ()) if component in clustered else ())))


async def ensure_secret(kube: Kube, body: Mapping[str, Any], required_keys: Iterable[str] = (),
                        complete_own: bool = False) -> bool:
    """Create the Secret unless one of that name exists (whoever made it). True when created now.

    An existing Secret is never changed; if it lacks one of ``required_keys``, IncompleteSecret. Except
    with ``complete_own``, for a Secret carrying exactly ``body``'s labels (made by this operator for
    this Shop): the missing keys are added from ``body`` (an update conditional on the resourceVersion
    read, so a concurrent change wins and the next reconcile looks again); present values never change.
    """
    meta = body["metadata"]
    existing = await kube.get(SECRET, meta["namespace"], meta["name"])
    if existing is None:
        try:
            await kube.create(SECRET, meta["namespace"], body)
        except KubeError as exc:
            if exc.status == 409:  # created between our read and write: theirs wins, never overwrite
                return False
            raise
        return True
    present = set(existing.get("data") or {}) | set(existing.get("stringData") or {})
    missing = [key for key in required_keys if key not in present]
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if missing and complete_own and all(labels.get(k) == v for k, v in (meta.get("labels") or {}).items()):
        completed = {**existing, "data": {**(existing.get("data") or {}),
                                          **{key: body["data"][key] for key in missing}}}
        await kube.replace(SECRET, meta["namespace"], completed)
        log.info("added %s to Secret/%s (made by this operator, before the chart referenced them)",
                 ", ".join(missing), meta["name"])
        return False
    if missing:
        raise IncompleteSecret(f"Secret/{meta['name']} exists but has no key {', '.join(missing)}, which the "
                               "shop's pods need; the operator never changes an existing Secret: add the key")
    return False
