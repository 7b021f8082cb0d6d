"""One reconcile of one Shop: secrets, render, apply, prune, observe. Level-based and idempotent.

The same function serves create/update/resume and the periodic resync, so a deleted or hand-edited
child is put back by the next run (server-side apply with ``force`` takes every rendered field back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from microshop_operator import secrets
from microshop_operator.config import API_VERSION, KIND, MANAGED_BY, SHOP_LABEL
from microshop_operator.kube import KNOWN_KINDS, Kind, Kube, KubeError
from microshop_operator.metrics import DriftTracker
from microshop_operator.render import Renderer, RenderError
from microshop_operator.status import COMPONENT_LABEL, Component, Failure, components_of
from microshop_operator.values import (
    InvalidSpec,
    clustered_infrastructure,
    managed_infrastructure,
    secret_names,
    spec_to_values,
    validate,
)

WORKLOAD_KINDS = (Kind("apps/v1", "Deployment", "deployments"), Kind("apps/v1", "StatefulSet", "statefulsets"))
PVC = Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims")
# Kinds searched for leftovers to prune: every kind the shop chart renders with ``create: false``
# Secrets (tests/charts checks the list against the chart). Never PVCs (they hold data and belong to
# StatefulSets) nor Secrets (the operator's own are kept; the chart renders none for the operator).
PRUNABLE_KINDS = tuple(k for k in KNOWN_KINDS if k.kind not in ("PersistentVolumeClaim", "Secret"))
APPLY_CONCURRENCY = 4


@dataclass(frozen=True)
class ShopRef:
    name: str
    namespace: str
    uid: str
    generation: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ShopRef:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation") or 0))

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}

    @property
    def selector(self) -> str:
        return f"{SHOP_LABEL}={self.name}"

    @property
    def labels(self) -> dict[str, str]:
        return {SHOP_LABEL: self.name, "app.kubernetes.io/managed-by": MANAGED_BY}

    @property
    def ownership_selector(self) -> str:
        """The operator's own labels: a Helm release of the same name carries neither."""
        return ",".join(f"{key}={value}" for key, value in self.labels.items())


@dataclass
class Result:
    """What one reconcile did and saw."""

    components: list[Component] = field(default_factory=list)
    failure: Failure | None = None
    applied: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    created_secrets: list[str] = field(default_factory=list)
    url: str | None = None
    paused: bool = False

    @property
    def succeeded(self) -> bool:
        return self.failure is None


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(obj["apiVersion"]).split("/")[0] if "/" in obj["apiVersion"] else "",
            str(obj["kind"]), str(obj["metadata"]["name"]))


def _describe(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller")
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or ())


def prepare(objects: Sequence[Mapping[str, Any]], shop: ShopRef, namespaced: Mapping[tuple[str, str], bool]
            ) -> list[dict[str, Any]]:
    """Pin each rendered object to the Shop: namespace, identifying labels, controller owner reference."""
    prepared: list[dict[str, Any]] = []
    for obj in objects:
        out = dict(obj)
        meta = dict(out.get("metadata") or {})
        if not meta.get("name"):
            raise RenderError(f"the chart rendered a {out.get('kind')} without a name")
        if not namespaced.get((out["apiVersion"], out["kind"]), True):
            raise RenderError(f"the chart rendered cluster-scoped {_describe(out)}; a Shop may only own "
                              "namespaced objects")
        if meta.get("namespace") not in (None, shop.namespace):
            raise RenderError(f"the chart rendered {_describe(out)} into namespace {meta['namespace']}, "
                              f"not the Shop's {shop.namespace}")
        meta["namespace"] = shop.namespace
        meta["labels"] = {**(meta.get("labels") or {}), **shop.labels}
        meta["ownerReferences"] = [shop.owner_reference]
        out["metadata"] = meta
        out.pop("status", None)
        if out["kind"] == "StatefulSet":  # the PVCs it makes carry the ownership labels too (see delete_volumes)
            spec = dict(out.get("spec") or {})
            templates = []
            for template in spec.get("volumeClaimTemplates") or ():
                template_meta = dict(template.get("metadata") or {})
                template_meta["labels"] = {**(template_meta.get("labels") or {}), **shop.labels}
                templates.append({**template, "metadata": template_meta})
            if templates:
                spec["volumeClaimTemplates"] = templates
                out["spec"] = spec
        prepared.append(out)
    return prepared


def shop_url(spec: Mapping[str, Any], objects: Sequence[Mapping[str, Any]], namespace: str) -> str | None:
    """Where the shop's public API answers: the ingress host, a route hostname, else the in-cluster Service."""
    ingress = spec.get("ingress") or {}
    if ingress.get("enabled", True) and ingress.get("host"):
        scheme = "https" if (ingress.get("tls") or {}).get("enabled") else "http"
        return f"{scheme}://{ingress['host']}/api"
    route = spec.get("httpRoute") or {}
    if route.get("enabled") and route.get("hostnames"):
        return f"http://{route['hostnames'][0]}/api"
    for obj in objects:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if obj.get("kind") == "Service" and labels.get(COMPONENT_LABEL) == "gateway":
            ports = (obj.get("spec") or {}).get("ports") or [{}]
            port = ports[0].get("port", 80)
            return f"http://{obj['metadata']['name']}.{namespace}.svc.cluster.local:{port}/api"
    return None


class Reconciler:
    def __init__(self, kube: Kube, renderer: Renderer,
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.kube = kube
        self.renderer = renderer
        self.log: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger(__name__)
        self.drift = DriftTracker()  # counts microshop_operator_drift_repairs_total

    async def reconcile(self, body: Mapping[str, Any]) -> Result:
        shop = ShopRef.of(body)
        spec: Mapping[str, Any] = body.get("spec") or {}
        result = Result(paused=bool(spec.get("paused")))
        if not result.paused:
            try:
                await self._converge(shop, spec, result)
            except InvalidSpec as exc:
                result.failure = Failure("InvalidSpec", str(exc), permanent=True)
            except RenderError as exc:
                result.failure = Failure("RenderFailed", f"helm template failed: {exc}")
            except _ApplyFailed as exc:
                result.failure = Failure("ApplyFailed", str(exc))
            except _SecretFailed as exc:
                result.failure = Failure("SecretFailed", str(exc))
            except KubeError as exc:
                result.failure = Failure("ApiError", str(exc))
        try:
            workloads = [(kind.kind, obj) for kind in WORKLOAD_KINDS
                         for obj in await self.kube.list(kind, shop.namespace, shop.selector)
                         if owned_by(obj, shop.uid)]
            result.components = components_of(workloads)
        except KubeError as exc:
            if result.failure is None:
                result.failure = Failure("ApiError", f"cannot read the shop's workloads: {exc}")
        return result

    async def _converge(self, shop: ShopRef, spec: Mapping[str, Any], result: Result) -> None:
        validate(spec)
        await self._ensure_secrets(shop, spec, result)
        rendered = await self.renderer.render(shop.name, shop.namespace, spec_to_values(shop.name, spec))
        namespaced: dict[tuple[str, str], bool] = {}
        for obj in rendered:
            try:
                kind = await self.kube.kind(obj["apiVersion"], obj["kind"])
            except KubeError as exc:
                raise _ApplyFailed(f"{_describe(obj)}: {exc}") from exc
            namespaced[(obj["apiVersion"], obj["kind"])] = kind.namespaced
        objects = prepare(rendered, shop, namespaced)
        await self._keep_claim_templates(shop, objects)
        result.url = shop_url(spec, objects, shop.namespace)
        await self._apply_all(objects, result)
        await self._prune(shop, spec, objects, result)

    async def _keep_claim_templates(self, shop: ShopRef, objects: Sequence[dict[str, Any]]) -> None:
        """A StatefulSet's volumeClaimTemplates are immutable: apply the live ones to a StatefulSet that exists.

        (One made by an older operator has claims without the ownership labels; a changed storage size
        that got past the CRD's transition rule would fail every apply.)"""
        sets = [obj for obj in objects if obj["kind"] == "StatefulSet"]
        if not sets:
            return
        try:
            live = {obj["metadata"]["name"]: obj for obj in await self.kube.list(WORKLOAD_KINDS[1], shop.namespace,
                                                                                 shop.selector)}
        except KubeError as exc:
            raise _ApplyFailed(f"cannot read the shop's StatefulSets: {exc}") from exc
        for obj in sets:
            current = live.get(obj["metadata"]["name"])
            templates = ((current or {}).get("spec") or {}).get("volumeClaimTemplates")
            if current is None or templates is None or not owned_by(current, shop.uid):
                continue
            obj["spec"] = {**obj["spec"], "volumeClaimTemplates": [
                {key: value for key, value in template.items() if key != "status"} for template in templates]}

    async def _ensure_secrets(self, shop: ShopRef, spec: Mapping[str, Any], result: Result) -> None:
        names = secret_names(shop.name, spec)
        # (body, the keys the rendered pods reference, whether to complete the operator's own Secret)
        wanted: list[tuple[dict[str, Any], tuple[str, ...], bool]] = [
            (secrets.jwt_secret_body(names.jwt, shop.namespace, shop.labels, shop.owner_reference),
             (secrets.JWT_KEY,), False),
            (secrets.admin_secret_body(names.admin, shop.namespace, names.admin_email, shop.labels,
                                       shop.owner_reference), (secrets.ADMIN_PASSWORD_KEY,), False),
        ]
        managed = managed_infrastructure(spec)
        if managed:  # all external: the chart references no infra Secret
            clustered = clustered_infrastructure(spec)
            wanted.append((secrets.infra_secret_body(names.infra, shop.namespace, shop.labels, clustered),
                           secrets.infra_keys(managed, clustered), True))
        for body, required, complete_own in wanted:
            try:
                if await secrets.ensure_secret(self.kube, body, required, complete_own):
                    result.created_secrets.append(body["metadata"]["name"])
                    self.log.info("created Secret %s", body["metadata"]["name"])
            except secrets.IncompleteSecret as exc:
                raise _SecretFailed(str(exc)) from exc
            except KubeError as exc:
                raise _SecretFailed(f"Secret/{body['metadata']['name']}: {exc}") from exc

    async def _apply_all(self, objects: Sequence[Mapping[str, Any]], result: Result) -> None:
        semaphore = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def apply(obj: Mapping[str, Any]) -> None:
            async with semaphore:
                try:
                    live = await self.kube.apply(obj)
                except KubeError as exc:
                    raise _ApplyFailed(f"{_describe(obj)}: {exc}") from exc
            result.applied.append(_describe(obj))
            self.drift.applied(obj, live)

        outcomes = await asyncio.gather(*(apply(obj) for obj in objects), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, _ApplyFailed):
                raise failure
        if failures:
            raise _ApplyFailed("; ".join(str(f) for f in failures[:3])
                               + (f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""))

    async def _prune(self, shop: ShopRef, spec: Mapping[str, Any], objects: Sequence[Mapping[str, Any]],
                     result: Result) -> None:
        wanted = {_key(obj) for obj in objects}
        names = secret_names(shop.name, spec)
        # Never pruned (the infra Secret is not owned, so prune would skip it anyway): the data on the
        # kept volumes was initialised with these credentials.
        keep_secrets = {names.jwt, names.admin, names.infra}
        for kind in PRUNABLE_KINDS:
            try:
                existing = await self.kube.list(kind, shop.namespace, shop.selector)
            except KubeError as exc:
                if exc.status == 404:  # this cluster does not serve the kind (e.g. no Gateway API)
                    continue
                raise
            for obj in existing:
                obj.setdefault("apiVersion", kind.api_version)
                obj.setdefault("kind", kind.kind)
                name = obj["metadata"]["name"]
                if _key(obj) in wanted or not owned_by(obj, shop.uid):
                    continue
                if kind.kind == "Secret" and name in keep_secrets:
                    continue
                await self.kube.delete(kind, shop.namespace, name)
                result.pruned.append(f"{kind.kind}/{name}")
                self.log.info("pruned %s/%s: the chart no longer renders it", kind.kind, name)

    async def delete_volumes(self, body: Mapping[str, Any]) -> list[str]:
        """Delete the PVCs the shop's StatefulSets made (selected by the operator's ownership labels, which
        ``prepare`` puts on the volumeClaimTemplates), then the infra Secret whose credentials they were
        initialised with, if the operator made it."""
        shop = ShopRef.of(body)
        deleted: list[str] = []
        claims = await self.kube.list(PVC, shop.namespace, shop.ownership_selector)
        for claim in claims:
            name = claim["metadata"]["name"]
            if await self.kube.delete(PVC, shop.namespace, name):
                deleted.append(name)
        infra = secret_names(shop.name, body.get("spec") or {}).infra
        existing = await self.kube.get(secrets.SECRET, shop.namespace, infra)
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        ours = existing is not None and labels.get(SHOP_LABEL) == shop.name
        if ours and await self.kube.delete(secrets.SECRET, shop.namespace, infra):  # never a Secret a user provided
            self.log.info("deleted Secret %s with the volumes it unlocked", infra)
        return deleted


class _ApplyFailed(Exception):
    pass


class _SecretFailed(Exception):
    pass
