"""kmock's KubernetesEmulator, extended with the API behaviours the operator and kopf rely on.

kmock 0.8 stores objects and streams events but merges JSON dicts for every write. Closed here:

* PATCH by content type: JSON merge patch (RFC 7386, ``null`` deletes), JSON patch (RFC 6902,
  including kopf's ``test`` op on ``resourceVersion`` → 409 on mismatch), strategic merge (as merge),
  and server-side apply (``application/apply-patch+yaml``): create-or-update, fields this manager
  applied before but no longer applies are removed, lists are atomic, ``force`` assumed;
* object metadata the server owns: ``uid``, ``resourceVersion`` (one global counter),
  ``creationTimestamp``, ``generation`` (bumped when anything but metadata/status changes);
  a write that changes nothing changes nothing (no new resourceVersion, no event);
* the status subresource: ``/status`` writes change only status, main writes never change it;
* list/watch: ``labelSelector`` (=, !=, exists), list ``resourceVersion``, watches resuming
  after the given ``resourceVersion`` instead of replaying everything, ``timeoutSeconds``;
* deletion: finalizers block, ``deletionTimestamp`` is set, ``DELETED`` once the last finalizer goes;
  a minimal garbage collector deletes dependents by ``ownerReferences`` (background propagation);
* the Shop CRD: schema defaults and schema validation (422) from the real CRD file;
* discovery as client-go reads it (so ``helm --dry-run=server`` can run against it): the core group's
  ``groupVersion`` is ``v1`` (kmock says ``/v1``), and ``/version`` reports a Kubernetes the charts
  accept (kmock says 1.26).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonschema
import kmock
import yaml
from kmock._internal import enums, rendering

CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "microshop-operator" / "crds" / "shops.microshop.dev.yaml"
SHOPS = kmock.resource("microshop.dev", "v1alpha1", "shops")
OBJECT_ACTIONS = {enums.action.LIST, enums.action.WATCH, enums.action.FETCH, enums.action.CREATE,
                  enums.action.UPDATE, enums.action.DELETE}
SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp", "managedFields")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, test (what kopf and kubectl send)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError) as exc:
            if op["op"] == "test":
                raise ApiError(409, "Conflict", f"test failed at {op['path']}") from exc
            raise ApiError(422, "Invalid", f"no such path {op['path']}") from exc
        last = parts[-1] if parts else None
        if op["op"] == "test":
            current: Any = doc
            try:
                for part in parts:
                    current = current[int(part)] if isinstance(current, list) else current[part]
            except (KeyError, IndexError, ValueError):
                current = object()
            if current != op.get("value"):
                raise ApiError(409, "Conflict", f"test failed at {op['path']}: the object has been modified")
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(str(last)), op["value"])
                else:
                    parent[int(str(last))] = op["value"]
            elif last is None:
                doc = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            try:
                if isinstance(parent, list):
                    del parent[int(str(last))]
                else:
                    del parent[last]
            except (KeyError, IndexError) as exc:
                raise ApiError(422, "Invalid", f"cannot remove {op['path']}: absent") from exc
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']!r}")
    return doc


def _prune_removed(current: Any, previous: Any, applied: Any) -> Any:
    """Drop from ``current`` what ``previous`` (the manager's last apply) had and ``applied`` no longer has."""
    if not (isinstance(current, dict) and isinstance(previous, dict)):
        return current
    result = dict(current)
    for key, old in previous.items():
        if not isinstance(applied, dict) or key not in applied:
            result.pop(key, None)
        elif isinstance(old, dict) and key in result:
            result[key] = _prune_removed(result[key], old, applied[key])
    return result


def _apply_merge(current: Any, applied: Any) -> Any:
    if isinstance(current, dict) and isinstance(applied, dict):
        result = dict(current)
        for key, value in applied.items():
            result[key] = _apply_merge(current.get(key), value)
        return result
    return copy.deepcopy(applied)  # scalars and lists: atomic


def matches_selector(labels: Mapping[str, str], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def schema_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Structural-schema defaulting as the API server does it (defaults of absent fields, recursively)."""
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for name, sub in schema["properties"].items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = schema_defaults(sub, result[name])
        return result
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: schema_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [schema_defaults(schema["items"], v) for v in value]
    return value


def _jsonschema_of(schema: Any) -> Any:
    """The CRD schema as plain JSON Schema (int-or-string; nullable)."""
    if isinstance(schema, list):
        return [_jsonschema_of(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _jsonschema_of(v) for k, v in schema.items()
           if not k.startswith("x-kubernetes-") and k not in ("nullable", "default")}
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    _rv: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, kmock.resource, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _changed: asyncio.Condition = attrs.field(factory=asyncio.Condition, init=False)
    _applied: dict[tuple[Any, ...], Any] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _status_resources: set[kmock.resource] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for res, info in list(self.resources.items()) if hasattr(self.resources, "items") else []:
            if "status" in info.subresources:
                self._status_resources.add(res)
        crd = yaml.safe_load(CRD_PATH.read_text())
        version = crd["spec"]["versions"][0]
        self.resources[SHOPS] = kmock.ResourceInfo(
            kind="Shop", singular="shop", namespaced=True, shortnames={"shop"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"}, subresources={"status"})
        self._schemas[SHOPS] = version["schema"]["openAPIV3Schema"]
        self._status_resources.update({SHOPS, kmock.resource("apps", "v1", "deployments"),
                                       kmock.resource("apps", "v1", "statefulsets")})

    # --- discovery ------------------------------------------------------------------------------

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            payload["groupVersion"] = str(payload["groupVersion"]).lstrip("/")
        return payload

    # --- plumbing -------------------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.resource.plural is None or request.action not in OBJECT_ACTIONS:
            return await kmock.KubernetesScaffold._handle(self, request)
        try:
            if request.action == enums.action.WATCH:
                return await self._watch(request)
            payload = await self._serve(request)
        except ApiError as exc:
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": exc.status,
                 "reason": exc.reason, "message": exc.message}, status=exc.status)
        return aiohttp.web.json_response(payload, status=201 if request.action == enums.action.CREATE else 200)

    def _known(self, res: kmock.resource) -> None:
        if res not in set(self._get_resources()):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource {res}")

    async def _emit(self, res: kmock.resource, type_: str, obj: Mapping[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self._log.append((rv, res, {"type": type_, "object": copy.deepcopy(dict(obj))}))
        async with self._changed:
            self._changed.notify_all()

    def _stamp(self, obj: dict[str, Any]) -> None:
        self._last_rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self._last_rv)

    def get_object(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _validate(self, res: kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        schema = self._schemas.get(res)
        if schema is None:
            return obj
        obj = schema_defaults(schema, obj)
        errors = sorted(jsonschema.Draft7Validator(_jsonschema_of(schema)).iter_errors(obj), key=str)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            raise ApiError(422, "Invalid", f"{res.plural} is invalid: {where}: {errors[0].message}")
        return obj

    # --- writes ---------------------------------------------------------------------------------

    async def store(self, res: kmock.resource, namespace: str | None, name: str, new: dict[str, Any],
                    *, subresource: str | None = None) -> dict[str, Any]:
        """Write a full new state of an object (creating it if absent), with server-side semantics."""
        key = (res, namespace, name)
        old = self.get_object(res, namespace, name)
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, namespace
        if namespace is None:
            meta.pop("namespace")
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            new.pop("status", None) if res in self._status_resources and subresource != "status" else None
            new = self._validate(res, new)
            self._stamp(new)
            self.objects[key] = new
            await self._emit(res, "ADDED", new)
            return new
        for field in SERVER_META:  # the server owns these
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        if res in self._status_resources:
            if subresource == "status":
                new = {**old, "status": new.get("status")} if new.get("status") is not None else \
                    {k: v for k, v in old.items() if k != "status"}
            elif "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        new = self._validate(res, new)
        if new == old:
            return old
        body_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
            {k: v for k, v in old.items() if k not in ("metadata", "status")}
        if body_changed:
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        self._stamp(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.objects[key].create(new)
            self.objects[key].delete()
            await self._emit(res, "DELETED", new)
            await self._collect_garbage(new["metadata"]["uid"])
            return new
        self.objects[key].create(new)
        await self._emit(res, "MODIFIED", new)
        return new

    async def remove(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get_object(res, namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = _now()
                self._stamp(obj)
                self.objects[(res, namespace, name)].create(obj)
                await self._emit(res, "MODIFIED", obj)
            return obj
        self._stamp(obj)
        self.objects[(res, namespace, name)].delete()
        await self._emit(res, "DELETED", obj)
        await self._collect_garbage(obj["metadata"]["uid"])
        return obj

    async def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: dependents whose every owner is gone are deleted."""
        for (res, namespace, name), stored in list(self.objects.items()):
            if stored.deleted:
                continue
            refs = stored.raw.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                await self.remove(res, namespace, name)

    async def _serve(self, request: rendering.Request) -> Any:
        res = request.resource
        assert res is not None
        self._known(res)
        ns, name = request.namespace, request.name
        async with self._lock:
            if request.action == enums.action.LIST:
                items = [copy.deepcopy(o.raw) for (r, n, _), o in self.objects.items()
                         if r == res and not o.deleted and (ns is None or n == ns)
                         and matches_selector(o.raw.get("metadata", {}).get("labels") or {},
                                              request.params.get("labelSelector"))]
                return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(self._last_rv)},
                        "items": items}
            if request.action == enums.action.FETCH:
                obj = self.get_object(res, ns, str(name))
                if obj is None:
                    raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
                return obj
            if request.action == enums.action.CREATE:
                body = dict(request.data or {})
                meta = body.setdefault("metadata", {})
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                name = meta.get("name")
                if not name:
                    raise ApiError(422, "Invalid", "metadata.name is required")
                if self.get_object(res, ns, name) is not None:
                    raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
                return await self.store(res, ns, name, body)
            if request.action == enums.action.DELETE:
                return await self.remove(res, ns, str(name))
            return await self._patch(request, res, ns, str(name))

    async def _patch(self, request: rendering.Request, res: kmock.resource, ns: str | None, name: str) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        old = self.get_object(res, ns, name)
        if content_type == "application/apply-patch+yaml":
            applied = yaml.safe_load(request.body) or {}
            manager = request.params.get("fieldManager", "")
            key = (res, ns, name, manager)
            base = old or {}
            previous = self._applied.get(key, {})
            merged = _apply_merge(_prune_removed(base, previous, applied), applied)
            result = await self.store(res, ns, name, merged, subresource=request.subresource)
            self._applied[key] = copy.deepcopy(applied)
            return result
        if old is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        if content_type == "application/json-patch+json":
            new = json_patch(old, request.data)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                              "application/json"):
            new = merge_patch(old, request.data)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        return await self.store(res, ns, name, new, subresource=request.subresource)

    # --- watches --------------------------------------------------------------------------------

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res, ns = request.resource, request.namespace
        assert res is not None and request._raw_request is not None
        since = int(request.params.get("resourceVersion") or 0)
        selector = request.params.get("labelSelector")
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        position = 0
        if not since:  # no resourceVersion: the current state first, as ADDED
            async with self._lock:
                position = len(self._log)
                initial = [{"type": "ADDED", "object": copy.deepcopy(o.raw)}
                           for (r, n, _), o in self.objects.items()
                           if r == res and not o.deleted and (ns is None or n == ns)]
            for event in initial:
                if matches_selector(event["object"]["metadata"].get("labels") or {}, selector):
                    await response.write(json.dumps(event).encode() + b"\n")
        try:
            async for event in self._events_after(res, ns, since, position, deadline):
                if matches_selector(event["object"]["metadata"].get("labels") or {}, selector):
                    await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    async def _events_after(self, res: kmock.resource, ns: str | None, since: int, position: int,
                            deadline: float) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            while position < len(self._log):
                rv, event_res, event = self._log[position]
                position += 1
                in_namespace = ns is None or event["object"]["metadata"].get("namespace") == ns
                if event_res == res and rv > since and in_namespace:
                    yield event
            seen = position
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda seen=seen: seen < len(self._log)),
                                           timeout=max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return
