"""A small async facade over the Kubernetes REST API for the calls kopf does not make for us.

kopf watches Shops and patches its own bookkeeping; the operator itself needs generic calls on
arbitrary kinds that the chart renders: server-side apply, list by label, delete, and a status
patch. The official client's generated APIs are per kind, so this goes one level down to
``ApiClient.call_api`` (generic paths, any content type) and runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

FIELD_MANAGER = "microshop-operator"


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def collection_path(self, namespace: str | None) -> str:
        prefix = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


# Kinds the shop chart renders (and the operator reads). Anything else is found by discovery.
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
    """Generic, asynchronous calls on any kind; one instance per operator process."""

    def __init__(self, configuration: client.Configuration | None = None) -> None:
        self._api = client.ApiClient(configuration or load_configuration())
        self._kinds: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in KNOWN_KINDS}
        self._lock = asyncio.Lock()

    def close(self) -> None:
        self._api.close()

    async def _call(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                    content_type: str = "application/json") -> Any:
        def call() -> Any:
            method_, url, headers, body_, _ = self._api.param_serialize(
                method, path,
                query_params=list((query or {}).items()),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(method_, url, header_params=headers, body=body_, _request_timeout=30)
            data = response.read()
            if not 200 <= response.status <= 299:
                raise ApiException(status=response.status, reason=response.reason,
                                   body=data.decode(errors="replace") if data else None)
            return json.loads(data) if data else {}

        try:
            return await asyncio.to_thread(call)
        except ApiException as exc:
            raise KubeError.from_api(exc) from None
        except OSError as exc:  # connection refused/reset, DNS: the API server is not reachable
            raise KubeError(0, "Unreachable", str(exc)) from None

    async def kind(self, api_version: str, kind: str) -> Kind:
        """The REST location of a kind, from the built-in table or API discovery."""
        known = self._kinds.get((api_version, kind))
        if known is not None:
            return known
        async with self._lock:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            listing = await self._call("GET", path)
            for resource in listing.get("resources", []):
                if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                    found = Kind(api_version, kind, resource["name"], bool(resource.get("namespaced", True)))
                    self._kinds[(api_version, kind)] = found
                    return found
        raise KubeError(404, "NotFound", f"the server does not serve {kind} in {api_version}")

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply (force: the operator owns every field it renders)."""
        kind = await self.kind(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        path = kind.object_path(meta.get("namespace"), meta["name"])
        result = await self._call("PATCH", path, body=dict(obj), content_type="application/apply-patch+yaml",
                                  query={"fieldManager": field_manager, "force": "true"})
        return dict(result)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return dict(await self._call("GET", kind.object_path(namespace, name)))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, kind: Kind, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self._call("GET", kind.collection_path(namespace), query=query)
        return [dict(item) for item in result.get("items") or []]

    async def create(self, kind: Kind, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        return dict(await self._call("POST", kind.collection_path(namespace), body=dict(obj)))

    async def replace(self, kind: Kind, namespace: str | None, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: the object's ``metadata.resourceVersion`` makes it conditional (409 if it moved on)."""
        path = kind.object_path(namespace, obj["metadata"]["name"])
        return dict(await self._call("PUT", path, body=dict(obj)))

    async def delete(self, kind: Kind, namespace: str | None, name: str, *,
                     propagation: str = "Background") -> bool:
        """Delete one object; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self._call("DELETE", kind.object_path(namespace, name), body=body)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def patch_status(self, kind: Kind, namespace: str | None, name: str,
                           status: Mapping[str, Any]) -> dict[str, Any]:
        path = kind.object_path(namespace, name) + "/status"
        return dict(await self._call("PATCH", path, body={"status": dict(status)},
                                     content_type="application/merge-patch+json"))
