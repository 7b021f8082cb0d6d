"""A small async facade over the Kubernetes API for the calls kopf does not make for us.

kopf watches Shops and patches its own bookkeeping; the operator itself needs generic calls on
arbitrary kinds that the chart renders: server-side apply, list by label, delete, and a status
patch. These go through the official client's public :class:`kubernetes.dynamic.DynamicClient`
(API discovery finds where a kind lives; ``server_side_apply`` for apply), run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

FIELD_MANAGER = "microshop-operator"
REQUEST_TIMEOUT_SECONDS = 30
T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """A kind as the operator names it; where it lives in the REST API comes from discovery."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True


# Kinds the shop chart renders (and the operator reads).
KNOWN_KINDS: tuple[Kind, ...] = (
    Kind("v1", "Secret", "secrets"),
    Kind("v1", "Service", "services"),
    Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apps/v1", "StatefulSet", "statefulsets"),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("networking.k8s.io/v1", "Ingress", "ingresses"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
)
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")
CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_api(cls, exc: ApiException) -> KubeError:
        message = str(exc.reason or "")
        reason = str(exc.reason or "Error")
        try:
            body = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            body = {}
        if isinstance(body, dict):
            message = str(body.get("message") or message)
            reason = str(body.get("reason") or reason)
        return cls(int(exc.status or 0), reason, message)


def load_configuration() -> client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


class Kube:
    """Generic, asynchronous calls on any kind; one instance per operator process.

    The dynamic client is made at the first call (its construction already asks the server for
    discovery); its discovery cache is a file of this instance's own, removed by :meth:`close`.
    """

    def __init__(self, configuration: client.Configuration | None = None) -> None:
        self._configuration = configuration
        self._client: DynamicClient | None = None
        self._cache_dir: Path | None = None
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovery = threading.Lock()  # the lazy discoverer's cache is not thread-safe

    def close(self) -> None:
        if self._client is not None:
            self._client.client.close()
            self._client = None
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None

    def _resource(self, api_version: str, kind: str) -> Resource:
        """The discovered resource of a kind (in a worker thread)."""
        with self._discovery:
            found = self._resources.get((api_version, kind))
            if found is not None:
                return found
            if self._client is None:
                if self._cache_dir is None:
                    self._cache_dir = Path(tempfile.mkdtemp(prefix="microshop-operator-discovery-"))
                api = client.ApiClient(self._configuration or load_configuration())
                try:
                    self._client = DynamicClient(api, cache_file=str(self._cache_dir / "discovery.json"))
                except BaseException:
                    api.close()
                    raise
            prefix = "apis" if "/" in api_version else "api"
            try:
                found = self._client.resources.get(prefix=prefix, api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise KubeError(404, "NotFound", f"the server does not serve {kind} in {api_version}") from None
            self._resources[(api_version, kind)] = found
            return found

    async def _call(self, kind: Kind, call: Callable[[DynamicClient, Resource], T]) -> T:
        def run() -> T:
            resource = self._resource(kind.api_version, kind.kind)
            assert self._client is not None
            return call(self._client, resource)

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            raise KubeError.from_api(exc) from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # refused/reset, DNS: the server is not reachable
            raise KubeError(0, "Unreachable", str(exc)) from None
        except ValueError as exc:  # the dynamic client's own checks, e.g. a namespaced object without a namespace
            raise KubeError(400, "BadRequest", str(exc)) from None

    async def kind(self, api_version: str, kind: str) -> Kind:
        """A kind as the server serves it (API discovery)."""
        resource = await self._call(Kind(api_version, kind, ""), lambda _, found: found)
        return Kind(api_version, kind, str(resource.name), bool(resource.namespaced))

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply (force: the operator owns every field it renders)."""
        meta = obj["metadata"]
        kind = Kind(obj["apiVersion"], obj["kind"], "")
        result = await self._call(kind, lambda dyn, res: dyn.server_side_apply(
            res, body=dict(obj), name=meta["name"], namespace=meta.get("namespace"), field_manager=field_manager,
            force_conflicts=True, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return dict(result.to_dict())

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result = await self._call(kind, lambda dyn, res: dyn.get(
                res, name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(result.to_dict())

    async def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        result = await self._call(kind, lambda dyn, res: dyn.get(
            res, namespace=namespace, label_selector=label_selector, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return [dict(item) for item in result.to_dict().get("items") or []]

    async def create(self, kind: Kind, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call(kind, lambda dyn, res: dyn.create(
            res, body=dict(obj), namespace=namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return dict(result.to_dict())

    async def replace(self, kind: Kind, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: the object's ``metadata.resourceVersion`` makes it conditional (409 if it moved on)."""
        result = await self._call(kind, lambda dyn, res: dyn.replace(
            res, body=dict(obj), namespace=namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return dict(result.to_dict())

    async def delete(self, kind: Kind, namespace: str | None, name: str, *,
                     propagation: str = "Background") -> bool:
        """Delete one object; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self._call(kind, lambda dyn, res: dyn.delete(
                res, name=name, namespace=namespace, body=body, _request_timeout=REQUEST_TIMEOUT_SECONDS))
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def patch_status(self, kind: Kind, namespace: str | None, name: str,
                           status: Mapping[str, Any]) -> dict[str, Any]:
        result = await self._call(kind, lambda dyn, res: dyn.patch(
            res.subresources["status"], body={"status": dict(status)}, name=name, namespace=namespace,
            content_type="application/merge-patch+json", _request_timeout=REQUEST_TIMEOUT_SECONDS))
        return dict(result.to_dict())
