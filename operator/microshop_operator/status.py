"""A Shop's status from what the cluster reports: pure functions, no I/O.

Conditions follow the Kubernetes convention (and rabbitmq/cluster-operator's): ``type``, ``status``,
``reason``, ``message``, ``lastTransitionTime`` (moves only when ``status`` flips) and
``observedGeneration``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from microshop_operator.values import INFRASTRUCTURE

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
INFRASTRUCTURE_READY = "InfrastructureReady"
PAUSED = "Paused"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED, INFRASTRUCTURE_READY, PAUSED)
# Conditions about the workloads as they run: they describe the last applied generation, not the spec.
OBSERVED_CONDITIONS = (READY, INFRASTRUCTURE_READY)

PHASE_PENDING = "Pending"
PHASE_PROGRESSING = "Progressing"
PHASE_READY = "Ready"
PHASE_DEGRADED = "Degraded"
PHASE_PAUSED = "Paused"

COMPONENT_LABEL = "app.kubernetes.io/component"


@dataclass(frozen=True)
class Component:
    """One workload (Deployment or StatefulSet) as its controller reports it."""

    name: str
    kind: str
    ready: int
    desired: int
    rolled_out: bool

    @property
    def is_ready(self) -> bool:
        return self.rolled_out and self.ready >= self.desired

    def describe(self) -> str:
        text = f"{self.name} {self.ready}/{self.desired} ready"
        return text if self.rolled_out else f"{text} (rollout pending)"


@dataclass(frozen=True)
class Failure:
    """Why the last reconcile did not complete. ``permanent``: retrying the same spec cannot help."""

    reason: str
    message: str
    permanent: bool = False


def component_of(obj: Mapping[str, Any], kind: str) -> Component:
    """``kind`` from the caller: real API servers omit ``kind``/``apiVersion`` on the items of a list."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    labels = meta.get("labels") or {}
    desired = spec.get("replicas")
    desired = 1 if desired is None else int(desired)
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    updated = status.get("updatedReplicas")
    rolled_out = observed >= generation and (updated is None or int(updated) >= desired)
    return Component(
        name=str(labels.get(COMPONENT_LABEL) or meta.get("name")),
        kind=kind,
        ready=int(status.get("readyReplicas") or 0),
        desired=desired,
        rolled_out=rolled_out,
    )


def components_of(workloads: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Component]:
    """Components of ``(kind, object)`` pairs, sorted by name."""
    return sorted((component_of(obj, kind) for kind, obj in workloads), key=lambda c: (c.name, c.kind))


def infrastructure_of(components: Sequence[Component]) -> dict[str, dict[str, Any]]:
    """Member health of each managed MongoDB, Redis and RabbitMQ, from its StatefulSet's status.

    ``replicas``: the members it should have (``spec.<kind>.replicas``); ``readyReplicas``: those ready
    (a RabbitMQ node that runs, a MongoDB member that is primary or secondary); ``quorum``: a majority is
    ready, so a cluster serves reads and writes even with a member down.
    """
    return {c.name: {"replicas": c.desired, "readyReplicas": c.ready, "quorum": c.ready * 2 > c.desired}
            for c in components if c.name in INFRASTRUCTURE and c.kind == "StatefulSet"}


def condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def desired_conditions(components: Sequence[Component], failure: Failure | None,
                       paused: bool) -> list[dict[str, Any]]:
    infra = [c for c in components if c.name in INFRASTRUCTURE]
    apps = [c for c in components if c.name not in INFRASTRUCTURE]
    infra_waiting = [c for c in infra if not c.is_ready]
    waiting = [c for c in components if not c.is_ready]

    if infra_waiting:
        infra_cond = condition(INFRASTRUCTURE_READY, False, "InfrastructureNotReady",
                               "; ".join(c.describe() for c in infra_waiting))
    else:
        infra_cond = condition(INFRASTRUCTURE_READY, True, "InfrastructureReady",
                               f"{len(infra)} managed, all ready" if infra else "no managed infrastructure")

    if not apps:
        ready = condition(READY, False, "NoComponents", "no workloads of this shop exist yet")
    elif waiting:
        ready = condition(READY, False, "ComponentsNotReady",
                          "not ready: " + "; ".join(c.describe() for c in waiting))
    else:
        ready = condition(READY, True, "AllComponentsReady", f"{len(components)} workloads ready")

    if failure is not None:
        degraded = condition(DEGRADED, True, failure.reason, failure.message)
        progressing = condition(PROGRESSING, False, failure.reason, "reconciliation is failing; see Degraded")
    else:
        degraded = condition(DEGRADED, False, "AsExpected", "the last reconcile applied every object")
        if paused:
            progressing = condition(PROGRESSING, False, "Paused", "spec.paused is true: nothing is applied")
        elif waiting or not apps:
            progressing = condition(PROGRESSING, True, "RollingOut",
                                    "waiting for: " + ", ".join(c.name for c in waiting) if waiting
                                    else "waiting for workloads")
        else:
            progressing = condition(PROGRESSING, False, "ReconcileComplete", "every workload is rolled out")
    if paused:
        paused_cond = condition(PAUSED, True, "SpecPaused",
                                "spec.paused is true: changes to the spec are not applied and nothing is pruned")
    else:
        paused_cond = condition(PAUSED, False, "Reconciling", "the operator applies the spec")
    return [ready, progressing, degraded, infra_cond, paused_cond]


def merge_conditions(old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]],
                     generation: int, now: datetime | None = None,
                     applied_generation: int | None = None) -> list[dict[str, Any]]:
    """New conditions, keeping each old ``lastTransitionTime`` unless that condition's status flipped.

    Each condition's ``observedGeneration`` is the generation it speaks about: ``generation`` (the
    spec as it is now) for Progressing, Degraded and Paused; for Ready and InfrastructureReady,
    which describe the workloads as they run, ``applied_generation`` (the last one applied) when given.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = {c.get("type"): c for c in old or ()}
    merged: list[dict[str, Any]] = []
    for cond in new:
        before = previous.get(cond["type"])
        transitioned = before is None or before.get("status") != cond["status"]
        merged.append({
            **cond,
            "observedGeneration": applied_generation if (
                cond["type"] in OBSERVED_CONDITIONS and applied_generation is not None) else generation,
            "lastTransitionTime": stamp if transitioned or before is None
            else before.get("lastTransitionTime", stamp),
        })
    return merged


def phase_of(conditions: Sequence[Mapping[str, Any]], paused: bool) -> str:
    by_type = {c["type"]: c for c in conditions}
    if paused:
        return PHASE_PAUSED
    if by_type.get(DEGRADED, {}).get("status") == "True":
        return PHASE_DEGRADED
    if by_type.get(READY, {}).get("status") == "True":
        return PHASE_READY
    if by_type.get(READY, {}).get("reason") == "NoComponents":
        return PHASE_PENDING
    return PHASE_PROGRESSING


def build_status(old: Mapping[str, Any] | None, *, generation: int, observed_generation: int | None,
                 components: Sequence[Component], failure: Failure | None, paused: bool,
                 url: str | None, now: datetime | None = None) -> dict[str, Any]:
    old = old or {}
    applied = observed_generation if observed_generation is not None else old.get("observedGeneration")
    conditions = merge_conditions(old.get("conditions"), desired_conditions(components, failure, paused),
                                  generation, now, applied_generation=applied)
    status: dict[str, Any] = {
        "phase": phase_of(conditions, paused),
        "conditions": conditions,
        "components": {c.name: {"kind": c.kind, "ready": c.ready, "desired": c.desired} for c in components},
        "infrastructure": infrastructure_of(components),
        "url": url,
    }
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    elif "observedGeneration" in old:
        status["observedGeneration"] = old["observedGeneration"]
    return status


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch from old to new for the keys we own; None when nothing changed."""
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = copy.deepcopy(value)
    # Components that disappeared (e.g. analytics disabled) must be removed explicitly in a merge patch.
    for key in ("components", "infrastructure"):
        if key in patch:
            for gone in set(old.get(key) or {}) - set(new.get(key) or {}):
                patch[key][gone] = None
    return patch or None


def transitions(old: Sequence[Mapping[str, Any]] | None,
                new: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Events worth posting: (type, reason, message, condition) for each condition that flipped."""
    before = {c.get("type"): c for c in old or ()}
    events: list[tuple[str, str, str, str]] = []
    for cond in new:
        prev = before.get(cond["type"])
        if prev is not None and prev.get("status") == cond["status"]:
            continue
        if prev is None and not (cond["type"] == DEGRADED and cond["status"] == "True"):
            continue  # a new Shop is not ready yet: no news, unless it cannot even be applied
        good = cond["type"] == PAUSED or (cond["status"] == "True") != (cond["type"] == DEGRADED)
        events.append(("Normal" if good else "Warning", cond["reason"], cond["message"], cond["type"]))
    return events
