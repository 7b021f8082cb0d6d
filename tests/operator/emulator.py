"""kmock's KubernetesEmulator, made to behave like kube-apiserver where the operator depends on it.

kmock 0.8 stores objects and streams events but merges JSON dicts for every write. Closed here (each
point has a test of its own in tests/operator/test_emulator.py):

* PATCH by content type: JSON merge patch (RFC 7386), JSON patch (RFC 6902, including kopf's
  ``test`` op → 409), strategic merge (as merge), and server-side apply with **field ownership**:
  ``metadata.managedFields`` per manager and operation, 409 Conflict when an apply changes a field
  another manager owns (unless ``force=true``), fields a manager stops applying are removed unless
  someone else owns them; PUT (update) with a ``resourceVersion`` precondition;
* server-owned metadata: ``uid``, ``resourceVersion`` (one global counter), ``creationTimestamp``,
  ``generation`` — only on kinds that track it, bumped on **spec** changes (custom resources: any
  change but metadata/status) and when a deletion with finalizers starts; a no-op write changes nothing;
* the status subresource: ``/status`` writes change only status, main writes never change it;
* list/watch: items of built-in kinds **without kind/apiVersion**, ``labelSelector``, watches resuming
  after a ``resourceVersion``, **410 Gone** (an ERROR event) for a resourceVersion older than the kept
  history (``compact()``, ``history_limit``), **BOOKMARK** events with ``allowWatchBookmarks``;
* deletion: finalizers block, ``deletionTimestamp``, ``DELETED`` once the last finalizer goes; a
  **garbage collector** by ownerReferences with Background, Foreground (``blockOwnerDeletion``
  dependents hold the owner) and Orphan propagation;
* the Shop CRD as a **structural schema**: unknown fields pruned, defaults applied, OpenAPI
  validation and the CEL rules (``x-kubernetes-validations``, transition rules with ``oldSelf``), 422;
  the CRD is an object (``apiextensions.k8s.io/v1``, installed at start as ``helm install`` does, or the
  one a test gives): Shops are served as the stored CRD reads, so applying a newer CRD changes them;
* built-in immutability: StatefulSet spec fields other than the mutable ones, Deployment selector;
* **RBAC** for service accounts: a bearer token ``system:serviceaccount:<ns>:<name>[#tag]`` is that
  account, authorized against the Roles/ClusterRoles and bindings stored in the emulator (install a
  chart into it), including OwnerReferencesPermissionEnforcement (changing ownerReferences needs
  ``delete``; ``blockOwnerDeletion`` needs ``update`` on the owner's ``finalizers``) and ``create``
  for an apply that creates. Every such check is recorded in ``calls``. Other tokens are admins;
* discovery as client-go and the Python client's DynamicClient read it (so ``helm --dry-run=server`` can
  run against it): preferred versions in kube-apiserver's order, and an unknown group, version or resource
  is a plain 404 ``NotFound``.

Where it still differs from a real server is listed in docs/operator.md ("The emulator").
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import datetime
import functools
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import celpy
import jsonpatch
import jsonschema
import kmock
import yaml
from kmock._internal import enums, rendering
from kmock._internal import k8s as kmock_k8s

CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "microshop-operator" / "crds" / "shops.microshop.dev.yaml"
SHOPS = kmock.resource("microshop.dev", "v1alpha1", "shops")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
OBJECT_ACTIONS = {enums.action.LIST, enums.action.WATCH, enums.action.FETCH, enums.action.CREATE,
                  enums.action.UPDATE, enums.action.DELETE}
SERVER_META = ("uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp", "managedFields")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _status_response(exc: ApiError) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": exc.status,
         "reason": exc.reason, "message": exc.message, "details": {}}, status=exc.status)


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """kube-apiserver's order of versions: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0, version)  # not Kubernetes-like: last, by name
    stage = {"beta": 1, "alpha": 2}.get(match.group(2) or "", 0)
    return (stage, -int(match.group(1)), -int(match.group(3) or 0), version)


def _prefer_stable(group: dict[str, Any]) -> dict[str, Any]:
    """An APIGroup with its versions in priority order and the first one preferred (kmock picks by chance)."""
    versions = sorted(group["versions"], key=lambda v: _version_priority(v["version"]))
    return {**group, "versions": versions, "preferredVersion": versions[0]}


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


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 (the jsonpatch package); a failed ``test`` (kopf's precondition) is 409 Conflict."""
    try:
        return jsonpatch.apply_patch(doc, ops)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise ApiError(409, "Conflict", f"the object has been modified: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, "Invalid", f"invalid JSON patch: {exc}") from exc


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


# --- field ownership (server-side apply) ------------------------------------------------------------

Path = tuple[str, ...]
_ABSENT = object()
# Never tracked as fields (the server owns them) and never pruned by an apply.
_UNTRACKED_META = {*SERVER_META, "name", "namespace", "managedFields"}


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every leaf field of an object by path; lists are atomic leaves (see docs/operator.md)."""
    if isinstance(value, dict) and value:
        out: dict[Path, Any] = {}
        for key, sub in value.items():
            out.update(leaves(sub, (*prefix, str(key))))
        return out
    return {prefix: value}


def tracked_leaves(obj: Mapping[str, Any], *, status: bool) -> dict[Path, Any]:
    found = leaves({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
    return {p: v for p, v in found.items()
            if p and not (p[0] == "metadata" and len(p) > 1 and p[1] in _UNTRACKED_META)
            and (p[0] == "status") == status}


def delete_path(obj: Any, path: Path) -> None:
    parent = obj
    for part in path[:-1]:
        if not isinstance(parent, dict) or part not in parent:
            return
        parent = parent[part]
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def default_manager(request: rendering.Request) -> str:
    """As kube-apiserver derives it: ``fieldManager``, else the user agent up to its first ``/``."""
    manager = request.params.get("fieldManager")
    if manager:
        return str(manager)
    agent = request.headers.get("User-Agent", "") or "unknown"
    return agent.split("/")[0] or "unknown"


# --- structural schemas (CRDs) -------------------------------------------------------------------------

def prune_unknown(schema: Mapping[str, Any], value: Any) -> Any:
    """Drop fields a structural schema does not specify (unless x-kubernetes-preserve-unknown-fields)."""
    if isinstance(value, dict):
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        props = schema.get("properties")
        if props is not None:
            return {k: prune_unknown(props[k], v) if k in props else v
                    for k, v in value.items() if k in props or preserve}
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            return {k: prune_unknown(additional, v) for k, v in value.items()}
        return value if preserve else {}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_unknown(schema["items"], v) for v in value]
    return value


@functools.lru_cache(maxsize=256)
def _cel_rule(rule: str) -> tuple[celpy.Runner, bool]:
    """A compiled ``x-kubernetes-validations`` rule, and whether it is a transition rule (uses ``oldSelf``)."""
    ast = _CEL.compile(rule)
    transition = any(getattr(token, "type", None) == "IDENT" and str(token) == "oldSelf"
                     for token in ast.scan_values(lambda _: True))
    return _CEL.program(ast), transition


_CEL = celpy.Environment()


def cel_violations(schema: Mapping[str, Any], value: Any, old: Any, where: str) -> list[str]:
    """Evaluate x-kubernetes-validations with a CEL implementation, bound as kube-apiserver binds them:
    ``self`` is the value at the schema node, ``oldSelf`` its previous value; transition rules (those that
    use ``oldSelf``) run only on an update where the old value exists; a result other than a bool, a
    rule that does not compile and an evaluation error (e.g. selecting an absent field) are errors."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or ():
        at = where or "<root>"
        try:
            program, transition = _cel_rule(rule["rule"])
        except celpy.CELParseError as exc:
            errors.append(f"{at}: Invalid value: {rule['rule']}: compilation failed: {exc}")
            continue
        if transition and old is _ABSENT:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            ok = program.evaluate(activation)
        except celpy.CELEvalError as exc:
            errors.append(f"{at}: Invalid value: {rule['rule']}: {exc.args[0] if exc.args else exc}")
            continue
        if not isinstance(ok, celpy.celtypes.BoolType):
            errors.append(f"{at}: Invalid value: {rule['rule']}: must evaluate to a bool, not {type(ok).__name__}")
        elif not ok:
            errors.append(f"{at}: Invalid value: \"object\": {rule.get('message') or rule['rule']}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key) if key in props else additional if isinstance(additional, dict) else None
            if sub_schema is not None:
                old_sub = old.get(key, _ABSENT) if isinstance(old, dict) else _ABSENT
                errors += cel_violations(sub_schema, sub, old_sub, f"{where}.{key}" if where else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, sub in enumerate(value):
            errors += cel_violations(schema["items"], sub, _ABSENT, f"{where}[{index}]")
    return errors


# --- built-in semantics ---------------------------------------------------------------------------------

# Built-in kinds whose registry strategy tracks metadata.generation (bumped on spec changes only).
GENERATION_BUILTINS = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                       ("apps", "replicasets"), ("policy", "poddisruptionbudgets"),
                       ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "networkpolicies"),
                       ("autoscaling", "horizontalpodautoscalers"),
                       ("apiextensions.k8s.io", "customresourcedefinitions")}
STATEFULSET_MUTABLE = {"replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy",
                       "minReadySeconds", "revisionHistoryLimit"}
SA_PREFIX = "system:serviceaccount:"


@attrs.frozen
class Call:
    """One request of a service account, as RBAC saw it."""

    user: str
    tag: str  # what follows '#' in the token: tells replicas of one service account apart
    verb: str
    group: str
    resource: str  # with the subresource: "shops/status"
    namespace: str | None
    name: str | None
    allowed: bool


_user: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("user", default=None)


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    crd: dict[str, Any] | None = None  # the Shop CRD installed at start (None: the chart's)
    history_limit: int = 20000  # watch events kept; older resourceVersions are "too old" (410 Gone)
    bookmark_interval: float = 5.0  # seconds between BOOKMARK events on watches that allow them
    calls: list[Call] = attrs.field(factory=list, init=False)
    _rv: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, kmock.resource, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _log_start: int = attrs.field(default=0, init=False)  # absolute position of _log[0]
    _compacted_rv: int = attrs.field(default=0, init=False)  # watches from before this get 410 Gone
    _changed: asyncio.Condition = attrs.field(factory=asyncio.Condition, init=False)
    _owners: dict[tuple[Any, ...], dict[tuple[str, str], set[Path]]] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _status_resources: set[kmock.resource] = attrs.field(factory=set, init=False)
    _rbac_writes: int = attrs.field(default=0, init=False)
    _rbac_cache: dict[tuple[str, str | None], tuple[tuple[int, int], list[Mapping[str, Any]]]] = attrs.field(
        factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()
        for res, info in list(self.resources.items()) if hasattr(self.resources, "items") else []:
            if "status" in info.subresources:
                self._status_resources.add(res)
        # The Prometheus Operator's CRDs, as in a cluster running it (a Shop's spec.metrics.serviceMonitor /
        # podMonitor); their schemas are checked where the chart is rendered (tests/charts/schemas).
        for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors")):
            self.resources[kmock.resource("monitoring.coreos.com", "v1", plural)] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=True, shortnames=set(),
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"}, subresources=set())
        self._status_resources.update({kmock.resource("apps", "v1", "deployments"),
                                       kmock.resource("apps", "v1", "statefulsets")})
        # The Shop CRD as `helm install` leaves it (created from the chart's crds/ by the "helm" manager),
        # unless the test gives another one: Shops are served as the stored CRD says.
        crd = copy.deepcopy(self.crd) if self.crd is not None else yaml.safe_load(CRD_PATH.read_text())
        key = (CRDS, None, crd["metadata"]["name"])
        crd["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        self._take_ownership(key, None, crd, "helm", "Update", status=False)
        self._render_managed_fields(key, crd)
        self._stamp(crd)
        self.objects[key] = crd
        self._serve_crd(crd)

    def _serve_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve (or stop serving) each version of a CustomResourceDefinition as it now reads."""
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            if not version.get("served", True):
                if res in self.resources:
                    del self.resources[res]
                self._schemas.pop(res, None)
                continue
            subresources = set(version.get("subresources") or {})
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"], singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                shortnames=set(names.get("shortNames") or ()), categories=set(names.get("categories") or ()),
                verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
                subresources=subresources)
            self._schemas[res] = version["schema"]["openAPIV3Schema"]
            if "status" in subresources:
                self._status_resources.add(res)
            else:
                self._status_resources.discard(res)

    # --- discovery ------------------------------------------------------------------------------

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}

    async def _serve_apis(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_apis(request)
        if isinstance(payload, dict):
            payload["groups"] = sorted((_prefer_stable(g) for g in payload["groups"]), key=lambda g: g["name"])
        return payload

    async def _serve_group(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_group(request)
        return _prefer_stable(payload) if isinstance(payload, dict) else payload

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        if request.resource.group == "" and request.resource.version != "v1":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            payload["groupVersion"] = str(payload["groupVersion"]).lstrip("/")
        return payload

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """Errors as kube-apiserver words them: an unknown group, version or path is a plain 404."""
        if isinstance(exc, kmock_k8s.KubernetesNotFoundError):
            exc = ApiError(404, "NotFound", "the server could not find the requested resource")
        if isinstance(exc, ApiError):
            return _status_response(exc)
        return await super()._render_error(exc)

    # --- plumbing -------------------------------------------------------------------------------

    def _kind_of(self, res: kmock.resource) -> str:
        info = self.resources.get(res) if hasattr(self.resources, "get") else None
        return str(getattr(info, "kind", None) or res.plural)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        is_put = request.method == enums.method.PUT and request.name is not None
        if request.resource is None or request.resource.plural is None or (
                request.action not in OBJECT_ACTIONS and not is_put):
            return await kmock.KubernetesScaffold._handle(self, request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        user, _, tag = token.partition("#")
        _user.set((user, tag) if user.startswith(SA_PREFIX) else None)
        try:
            self._authorize_request(request, is_put)
            if request.action == enums.action.WATCH:
                return await self._watch(request)
            payload = await self._serve(request, is_put)
        except ApiError as exc:
            return _status_response(exc)
        return aiohttp.web.json_response(payload, status=201 if request.action == enums.action.CREATE else 200)

    def _known(self, res: kmock.resource) -> None:
        if res not in set(self._get_resources()):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

    async def _emit(self, res: kmock.resource, type_: str, obj: Mapping[str, Any]) -> None:
        if res.group == "rbac.authorization.k8s.io":
            self._rbac_writes += 1
        rv = int(obj["metadata"]["resourceVersion"])
        self._log.append((rv, res, {"type": type_, "object": copy.deepcopy(dict(obj))}))
        if len(self._log) > self.history_limit:
            self._drop_history(len(self._log) // 2)
        async with self._changed:
            self._changed.notify_all()

    def _drop_history(self, count: int) -> None:
        if count <= 0:
            return
        self._compacted_rv = max(self._compacted_rv, self._log[count - 1][0])
        del self._log[:count]
        self._log_start += count

    def compact(self) -> int:
        """Forget every watch event so far (as etcd compaction does): older resourceVersions are 410 Gone."""
        self._drop_history(len(self._log))
        self._compacted_rv = self._last_rv
        return self._compacted_rv

    def _stamp(self, obj: dict[str, Any]) -> None:
        self._last_rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self._last_rv)

    def get_object(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _live(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(key, stored.raw) for key, stored in self.objects.items() if not stored.deleted]

    # --- RBAC -----------------------------------------------------------------------------------

    def _resource_by_kind(self, api_version: str, kind: str) -> kmock.resource | None:
        group, _, version = api_version.rpartition("/")
        for res in self._get_resources():
            if res.group == group and res.version == version and self._kind_of(res) == kind:
                return res
        return None

    def _rules_for(self, user: str, namespace: str | None) -> list[Mapping[str, Any]]:
        version = sum(1 for key in self.objects if key[0].group == "rbac.authorization.k8s.io")
        cached = self._rbac_cache.get((user, namespace))
        if cached is not None and cached[0] == (self._rbac_writes, version):
            return cached[1]
        rules = self._compute_rules(user, namespace)
        self._rbac_cache[(user, namespace)] = ((self._rbac_writes, version), rules)
        return rules

    def _compute_rules(self, user: str, namespace: str | None) -> list[Mapping[str, Any]]:
        sa_namespace, _, sa_name = user.removeprefix(SA_PREFIX).partition(":")
        groups = {"system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"}

        def bound(binding: Mapping[str, Any]) -> bool:
            for subject in binding.get("subjects") or ():
                if subject.get("kind") == "ServiceAccount" and subject.get("name") == sa_name \
                        and subject.get("namespace") == sa_namespace:
                    return True
                if (subject.get("kind") == "Group" and subject.get("name") in groups) or \
                        (subject.get("kind") == "User" and subject.get("name") == user):
                    return True
            return False

        def role_rules(ref: Mapping[str, Any], ns: str | None) -> list[Mapping[str, Any]]:
            plural = "roles" if ref.get("kind") == "Role" else "clusterroles"
            role = self.get_object(kmock.resource("rbac.authorization.k8s.io", "v1", plural),
                                   ns if plural == "roles" else None, str(ref.get("name")))
            return list((role or {}).get("rules") or ())

        rules: list[Mapping[str, Any]] = []
        for (res, ns, _), obj in self._live():
            if res.group != "rbac.authorization.k8s.io" or not bound(obj):
                continue
            if res.plural == "clusterrolebindings":
                rules += role_rules(obj.get("roleRef") or {}, None)
            elif res.plural == "rolebindings" and namespace is not None and ns == namespace:
                rules += role_rules(obj.get("roleRef") or {}, ns)
        return rules

    def authorize(self, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> None:
        """RBAC for the current request's service account (other users are cluster admins); records the call."""
        current = _user.get()
        if current is None:
            return
        user, tag = current

        def allows(rule: Mapping[str, Any]) -> bool:
            names = rule.get("resourceNames") or ()
            return (verb in rule.get("verbs", ()) or "*" in rule.get("verbs", ())) \
                and (group in rule.get("apiGroups", ()) or "*" in rule.get("apiGroups", ())) \
                and (resource in rule.get("resources", ()) or "*" in rule.get("resources", ())) \
                and (not names or (name is not None and name in names))

        allowed = any(allows(rule) for rule in self._rules_for(user, namespace))
        self.calls.append(Call(user, tag, verb, group, resource, namespace, name, allowed))
        if not allowed:
            plural, _, sub = resource.partition("/")
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            target = f'{plural}.{group}' if group else plural
            raise ApiError(403, "Forbidden",
                           f'{target}{f" {name!r}" if name else ""} is forbidden: User "{user}" cannot {verb} '
                           f'resource "{plural}"{f" subresource {sub!r}" if sub else ""} in API group "{group}"'
                           f"{where}")

    def _authorize_request(self, request: rendering.Request, is_put: bool) -> None:
        res = request.resource
        assert res is not None
        if is_put:
            verb = "update"
        elif request.action == enums.action.UPDATE:
            verb = "patch"
        else:
            verb = {enums.action.LIST: "list", enums.action.WATCH: "watch", enums.action.FETCH: "get",
                    enums.action.CREATE: "create", enums.action.DELETE: "delete"}[request.action]
        resource = f"{res.plural}/{request.subresource}" if request.subresource else str(res.plural)
        self.authorize(verb, res.group or "", resource, request.namespace, request.name)

    def _authorize_owner_references(self, res: kmock.resource, namespace: str | None, name: str,
                                    old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> None:
        """OwnerReferencesPermissionEnforcement: changing ownerReferences needs ``delete`` on the object;
        setting ``blockOwnerDeletion`` needs ``update`` on the owner's ``finalizers`` subresource."""
        old_refs = ((old or {}).get("metadata") or {}).get("ownerReferences") or []
        new_refs = (new.get("metadata") or {}).get("ownerReferences") or []
        if old_refs == new_refs:
            return
        self.authorize("delete", res.group or "", str(res.plural), namespace, name)
        for ref in new_refs:
            if ref.get("blockOwnerDeletion") and ref not in old_refs:
                owner = self._resource_by_kind(str(ref.get("apiVersion")), str(ref.get("kind")))
                if owner is None:
                    raise ApiError(422, "Invalid", f"ownerReferences: cannot find {ref.get('kind')} "
                                                   f"{ref.get('apiVersion')} to check blockOwnerDeletion")
                self.authorize("update", owner.group or "", f"{owner.plural}/finalizers", namespace,
                               str(ref.get("name")))

    # --- validation -----------------------------------------------------------------------------

    def _validate(self, res: kmock.resource, obj: dict[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
        name = obj.get("metadata", {}).get("name")
        if res == kmock.resource("apps", "v1", "statefulsets") and old is not None:
            changed = {k for k in set(obj.get("spec") or {}) | set(old.get("spec") or {})
                       if (obj.get("spec") or {}).get(k) != (old.get("spec") or {}).get(k)}
            if changed - STATEFULSET_MUTABLE:
                raise ApiError(422, "Invalid", f'StatefulSet.apps "{name}" is invalid: spec: Forbidden: updates to '
                               "statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                               "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
                               f"and 'minReadySeconds' are forbidden (changed: {', '.join(sorted(changed))})")
        if res == kmock.resource("apps", "v1", "deployments") and old is not None and \
                (obj.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
            raise ApiError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: '
                                           f"{json.dumps((obj.get('spec') or {}).get('selector'))}: field is immutable")
        schema = self._schemas.get(res)
        if schema is None:
            return obj
        kept = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
        obj = {**prune_unknown(schema, obj), **kept}
        obj = schema_defaults(schema, obj)
        errors = sorted(jsonschema.Draft7Validator(_jsonschema_of(schema)).iter_errors(obj), key=str)
        messages = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors]
        if not messages:
            root = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            old_root = {k: v for k, v in old.items() if k not in ("apiVersion", "kind", "metadata")} \
                if old is not None else _ABSENT
            messages = cel_violations(schema, root, old_root, "")
        if messages:
            kind = self._kind_of(res)
            raise ApiError(422, "Invalid", f'{kind}.{res.group} "{name}" is invalid: {"; ".join(messages[:3])}')
        return obj

    # --- writes ---------------------------------------------------------------------------------

    def _tracks_generation(self, res: kmock.resource) -> bool:
        return res in self._schemas or (res.group, res.plural) in GENERATION_BUILTINS

    def _body_changed(self, res: kmock.resource, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
        if res in self._schemas:  # custom resources: anything but metadata and status
            return {k: v for k, v in new.items() if k not in ("metadata", "status")} != \
                {k: v for k, v in old.items() if k not in ("metadata", "status")}
        return new.get("spec") != old.get("spec")

    def _render_managed_fields(self, key: tuple[Any, ...], obj: dict[str, Any]) -> None:
        owners = self._owners.get(key) or {}
        obj["metadata"]["managedFields"] = [
            {"manager": manager, "operation": operation, "apiVersion": obj.get("apiVersion"),
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(paths)}
            for (manager, operation), paths in sorted(owners.items()) if paths]

    def _take_ownership(self, key: tuple[Any, ...], old: Mapping[str, Any] | None, new: Mapping[str, Any],
                        manager: str, operation: str, status: bool, applied: set[Path] | None = None) -> None:
        """Update: the writer owns what it changed, others lose it. Apply: the applier owns ``applied``."""
        owners = self._owners.setdefault(key, {})
        before = tracked_leaves(old or {}, status=status)
        after = tracked_leaves(new, status=status)
        changed = {p for p, v in after.items() if before.get(p, _ABSENT) != v}
        gone = set(before) - set(after)
        for owner, paths in owners.items():
            if owner != (manager, operation):
                paths -= gone | (changed if operation == "Update" else set())
            else:
                paths -= gone
        mine = owners.setdefault((manager, operation), set())
        if applied is not None:
            mine.clear()
            mine |= applied & set(after)
        else:
            mine |= changed

    async def store(self, res: kmock.resource, namespace: str | None, name: str, new: dict[str, Any],
                    *, subresource: str | None = None, manager: str = "unknown", operation: str = "Update",
                    applied: set[Path] | None = None) -> dict[str, Any]:
        """Write a full new state of an object (creating it if absent), with server-side semantics."""
        key = (res, namespace, name)
        old = self.get_object(res, namespace, name)
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, namespace
        new.setdefault("apiVersion", f"{res.group}/{res.version}" if res.group else res.version)
        new.setdefault("kind", self._kind_of(res))
        if namespace is None:
            meta.pop("namespace")
        if old is None:
            if res in self._status_resources and subresource != "status":
                new.pop("status", None)
            for field in SERVER_META:
                meta.pop(field, None)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now())
            if self._tracks_generation(res):
                meta["generation"] = 1
            new = self._validate(res, new, None)
            self._authorize_owner_references(res, namespace, name, None, new)
            self._take_ownership(key, None, new, manager, operation, status=False, applied=applied)
            self._render_managed_fields(key, new)
            self._stamp(new)
            self.objects[key] = new
            if res == CRDS:
                self._serve_crd(new)
            await self._emit(res, "ADDED", new)
            if meta.get("ownerReferences"):  # an owner may already be gone: the collector deletes it then
                await self._collect_garbage()
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
        new = self._validate(res, new, old)
        self._authorize_owner_references(res, namespace, name, old, new)
        owners_before = copy.deepcopy(self._owners.get(key) or {})
        self._take_ownership(key, old, new, manager, operation, status=subresource == "status", applied=applied)
        self._render_managed_fields(key, new)
        if new == old and owners_before == self._owners.get(key):
            return old
        if self._tracks_generation(res) and self._body_changed(res, new, old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        self._stamp(new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.objects[key].create(new)
            self.objects[key].delete()
            self._owners.pop(key, None)
            await self._emit(res, "DELETED", new)
            await self._collect_garbage()
            return new
        self.objects[key].create(new)
        if res == CRDS:
            self._serve_crd(new)
        await self._emit(res, "MODIFIED", new)
        if new["metadata"].get("deletionTimestamp") or \
                new["metadata"].get("ownerReferences") != old["metadata"].get("ownerReferences"):
            await self._collect_garbage()  # a finalizer went, or an owner changed: the collector may have work
        return new

    async def remove(self, res: kmock.resource, namespace: str | None, name: str,
                     propagation: str = "Background") -> dict[str, Any]:
        result = await self._remove(res, namespace, name, propagation)
        await self._collect_garbage()
        return result

    async def _remove(self, res: kmock.resource, namespace: str | None, name: str,
                      propagation: str) -> dict[str, Any]:
        key = (res, namespace, name)
        obj = self.get_object(res, namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        meta = obj["metadata"]
        if propagation == "Orphan":
            await self._orphan(meta["uid"])
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append("foregroundDeletion")
        if finalizers:
            if not meta.get("deletionTimestamp") or finalizers != meta.get("finalizers"):
                meta["finalizers"] = finalizers
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _now()
                    if meta.get("generation"):
                        meta["generation"] = int(meta["generation"]) + 1
                self._stamp(obj)
                self.objects[key].create(obj)
                await self._emit(res, "MODIFIED", obj)
            return obj
        self._stamp(obj)
        self.objects[key].delete()
        self._owners.pop(key, None)
        await self._emit(res, "DELETED", obj)
        return obj

    async def _orphan(self, owner_uid: str) -> None:
        for (res, namespace, name), obj in self._live():
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                updated = copy.deepcopy(obj)
                updated["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                self._stamp(updated)
                self.objects[(res, namespace, name)].create(updated)
                await self._emit(res, "MODIFIED", updated)

    async def _collect_garbage(self) -> None:
        """The garbage collector, run to a fixed point after every write (synchronously, unlike a real one).

        * dependents whose every owner is gone are deleted (background);
        * dependents of an owner in foreground deletion are deleted; the owner's ``foregroundDeletion``
          finalizer goes once no dependent with ``blockOwnerDeletion: true`` is left.
        """
        changed = True
        while changed:
            changed = False
            live = {obj["metadata"]["uid"]: (key, obj) for key, obj in self._live()}
            foreground = {uid for uid, (_, obj) in live.items()
                          if obj["metadata"].get("deletionTimestamp")
                          and "foregroundDeletion" in (obj["metadata"].get("finalizers") or ())}
            blocked: set[str] = set()
            for (res, namespace, name), obj in live.values():
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                blocked |= {r.get("uid") for r in refs if r.get("blockOwnerDeletion") and r.get("uid") in foreground}
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                if all(r.get("uid") not in live for r in refs) or any(r.get("uid") in foreground for r in refs):
                    await self._remove(res, namespace, name, "Background")
                    changed = True
                    break
            if changed:
                continue
            for uid in foreground - blocked:
                key, obj = live[uid]
                updated = copy.deepcopy(obj)
                updated["metadata"]["finalizers"] = [f for f in updated["metadata"]["finalizers"]
                                                     if f != "foregroundDeletion"]
                self._stamp(updated)
                if updated["metadata"]["finalizers"]:
                    self.objects[key].create(updated)
                    await self._emit(key[0], "MODIFIED", updated)
                else:
                    self.objects[key].create(updated)
                    self.objects[key].delete()
                    self._owners.pop(key, None)
                    await self._emit(key[0], "DELETED", updated)
                changed = True

    def _list_item(self, res: kmock.resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Items of lists of built-in kinds carry no kind/apiVersion on a real server (custom resources do)."""
        item = copy.deepcopy(dict(obj))
        if res not in self._schemas:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return item

    async def _serve(self, request: rendering.Request, is_put: bool = False) -> Any:
        res = request.resource
        assert res is not None
        self._known(res)
        ns, name = request.namespace, request.name
        manager = default_manager(request)
        async with self._lock:
            if request.action == enums.action.LIST:
                items = [self._list_item(res, o.raw) for (r, n, _), o in self.objects.items()
                         if r == res and not o.deleted and (ns is None or n == ns)
                         and matches_selector(o.raw.get("metadata", {}).get("labels") or {},
                                              request.params.get("labelSelector"))]
                group_version = f"{res.group}/{res.version}" if res.group else res.version
                return {"apiVersion": group_version, "kind": f"{self._kind_of(res)}List",
                        "metadata": {"resourceVersion": str(self._last_rv)}, "items": items}
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
                return await self.store(res, ns, name, body, manager=manager)
            if request.action == enums.action.DELETE:
                options = request.data if isinstance(request.data, dict) else {}
                propagation = str(options.get("propagationPolicy") or request.params.get("propagationPolicy")
                                  or "Background")
                return await self.remove(res, ns, str(name), propagation)
            if is_put:
                return await self._replace(request, res, ns, str(name), manager)
            return await self._patch(request, res, ns, str(name), manager)

    async def _replace(self, request: rendering.Request, res: kmock.resource, ns: str | None, name: str,
                       manager: str) -> Any:
        body = dict(request.data or {})
        old = self.get_object(res, ns, name)
        if old is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and str(wanted) != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": the object '
                                            "has been modified; please apply your changes to the latest version "
                                            "and try again")
        return await self.store(res, ns, name, body, subresource=request.subresource, manager=manager)

    async def _patch(self, request: rendering.Request, res: kmock.resource, ns: str | None, name: str,
                     manager: str) -> Any:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        old = self.get_object(res, ns, name)
        if content_type == "application/apply-patch+yaml":
            return await self._apply(request, res, ns, name, old)
        if old is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
        if content_type == "application/json-patch+json":
            new = json_patch(old, request.data)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                              "application/json"):
            new = merge_patch(old, request.data)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        return await self.store(res, ns, name, new, subresource=request.subresource, manager=manager)

    async def _apply(self, request: rendering.Request, res: kmock.resource, ns: str | None, name: str,
                     old: dict[str, Any] | None) -> Any:
        """Server-side apply with field ownership: conflicts (409) unless ``force``; fields this manager
        applied before and no longer applies are removed unless another manager owns them too."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", "PATCH requests with apply content type require fieldManager")
        force = request.params.get("force") == "true"
        applied = yaml.safe_load(request.body) or {}
        status = request.subresource == "status"
        if old is None:
            self.authorize("create", res.group or "", str(res.plural), ns, name)  # apply that creates
        key = (res, ns, name)
        owners = self._owners.setdefault(key, {})
        current = old or {}
        current_leaves = tracked_leaves(current, status=status)
        applied_leaves = tracked_leaves(applied, status=status)
        conflicts = sorted({(other, path) for other, paths in owners.items() if other != (manager, "Apply")
                            for path in paths & set(applied_leaves)
                            if current_leaves.get(path, _ABSENT) != applied_leaves[path]})
        if conflicts and not force:
            listed = "\n".join(f'- conflict with "{other[0]}" using {applied.get("apiVersion")}: .{".".join(path)}'
                               for other, path in conflicts)
            raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict"
                                            f"{'s' if len(conflicts) > 1 else ''}: {listed}")
        for other, path in conflicts:
            owners[other].discard(path)
        previous = owners.get((manager, "Apply"), set())
        others = set().union(*(paths for owner, paths in owners.items() if owner != (manager, "Apply")))
        merged = _apply_merge(current, applied)
        for path in previous - set(applied_leaves) - others:
            delete_path(merged, path)
        return await self.store(res, ns, name, merged, subresource=request.subresource, manager=manager,
                                operation="Apply", applied=set(applied_leaves))

    # --- watches --------------------------------------------------------------------------------

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res, ns = request.resource, request.namespace
        assert res is not None and request._raw_request is not None
        since = int(request.params.get("resourceVersion") or 0)
        selector = request.params.get("labelSelector")
        timeout = float(request.params.get("timeoutSeconds") or 3600)
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        position = self._log_start + len(self._log)
        if since and since < self._compacted_rv:
            await response.write(json.dumps(self._gone(since)).encode() + b"\n")
            await response.write_eof()
            return response
        if since:
            position = self._log_start
        else:  # no resourceVersion: the current state first, as ADDED
            async with self._lock:
                position = self._log_start + len(self._log)
                initial = [{"type": "ADDED", "object": copy.deepcopy(o.raw)}
                           for (r, n, _), o in self.objects.items()
                           if r == res and not o.deleted and (ns is None or n == ns)]
            for event in initial:
                if matches_selector(event["object"]["metadata"].get("labels") or {}, selector):
                    await response.write(json.dumps(event).encode() + b"\n")
        try:
            async for event in self._events_after(res, ns, since, position, deadline,
                                                  self.bookmark_interval if bookmarks else None):
                if event["type"] in ("BOOKMARK", "ERROR") or \
                        matches_selector(event["object"]["metadata"].get("labels") or {}, selector):
                    await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        await response.write_eof()
        return response

    def _gone(self, since: int) -> dict[str, Any]:
        return {"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
            "message": f"too old resource version: {since} ({self._compacted_rv})"}}

    def _bookmark(self, res: kmock.resource) -> dict[str, Any]:
        group_version = f"{res.group}/{res.version}" if res.group else res.version
        return {"type": "BOOKMARK", "object": {"apiVersion": group_version, "kind": self._kind_of(res),
                                               "metadata": {"resourceVersion": str(self._last_rv)}}}

    async def _events_after(self, res: kmock.resource, ns: str | None, since: int, position: int,
                            deadline: float, bookmark_every: float | None) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        next_bookmark = loop.time() + bookmark_every if bookmark_every else None
        while loop.time() < deadline:
            if position < self._log_start:  # compacted while this watch lagged behind
                yield self._gone(since)
                return
            while position < self._log_start + len(self._log):
                rv, event_res, event = self._log[position - self._log_start]
                position += 1
                in_namespace = ns is None or event["object"]["metadata"].get("namespace") == ns
                if event_res == res and rv > since and in_namespace:
                    since = rv
                    yield event
            if next_bookmark is not None and loop.time() >= next_bookmark:
                yield self._bookmark(res)
                next_bookmark = loop.time() + (bookmark_every or 0)
            seen = position
            wake_at = deadline if next_bookmark is None else min(deadline, next_bookmark)
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda seen=seen: seen < self._log_start + len(self._log)),
                        timeout=max(0.0, wake_at - loop.time()))
                except TimeoutError:
                    if next_bookmark is None:
                        return
