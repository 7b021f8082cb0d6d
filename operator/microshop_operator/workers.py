"""The resync loop of each Shop, and the process-wide state the kopf handlers share.

kopf daemons and timers always add a finalizer, so each Shop's resync loop is an asyncio task of
our own (a :class:`Worker`), started, woken and stopped from the Shop's watch events
(:mod:`microshop_operator.handlers`). The work is in :mod:`microshop_operator.reconcile` (what to
apply) and :mod:`microshop_operator.status` (what to report).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import kopf

from microshop_operator import metrics
from microshop_operator import status as status_mod
from microshop_operator.config import GROUP, PLURAL, VERSION, get_config
from microshop_operator.crd import crd_of
from microshop_operator.kube import Kind, Kube, KubeError
from microshop_operator.leader import LeaderElector
from microshop_operator.reconcile import Reconciler, Result, ShopRef

Logger = logging.Logger | logging.LoggerAdapter[Any]

SHOP = Kind(f"{GROUP}/{VERSION}", "Shop", PLURAL)

# Handlers that run on every watch event: their "succeeded" lines are DEBUG, not INFO.
QUIET_HANDLERS = ("shop_event", "child_event")


class QuietHandlers(logging.Filter):
    """kopf logs "Handler 'x' succeeded." at INFO for every event; for the event handlers that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and any(
                record.getMessage() == f"Handler {name!r} succeeded." for name in QUIET_HANDLERS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


@dataclass
class Worker:
    """The resync loop of one Shop: reconciles at once when woken, else every resync period."""

    namespace: str
    name: str
    uid: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    generation: int | None = None  # the last generation seen in a watch event
    task: asyncio.Task[None] | None = None


@dataclass
class Runtime:
    """Process-wide state, kept in kopf's memo."""

    reconciler: Reconciler
    kube: Kube
    resync_seconds: float
    logger: Logger
    elector: LeaderElector | None = None
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    workers: dict[str, Worker] = field(default_factory=dict)
    renewer: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def wake(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is not None:
            worker.wakeup.set()

    def observe(self, body: Mapping[str, Any]) -> None:
        """A Shop watch event: start its worker, and wake it when the spec (generation) changed."""
        meta = body["metadata"]
        uid = str(meta["uid"])
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = Worker(meta["namespace"], meta["name"], uid)
            worker.task = asyncio.create_task(self._run(worker), name=f"resync {meta['namespace']}/{meta['name']}")
        generation = int(meta.get("generation") or 0)
        if worker.generation != generation or meta.get("deletionTimestamp"):
            worker.generation = generation
            worker.wakeup.set()

    def stop(self, uid: str) -> None:
        metrics.shop_phase(uid, None)
        worker = self.workers.pop(uid, None)
        self.locks.pop(uid, None)
        if worker is not None and worker.task is not None:
            worker.task.cancel()

    async def stop_all(self) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        for uid in list(self.workers):
            self.stop(uid)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, worker: Worker) -> None:
        failures = 0
        delay = 0.0  # the first reconcile at once: a new Shop, or every Shop when the operator starts
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wakeup.wait(), timeout=delay)
            worker.wakeup.clear()
            if not self.leading:
                return
            try:
                current = await self.kube.get(SHOP, worker.namespace, worker.name)
            except KubeError as exc:
                self.logger.warning("cannot read Shop %s/%s: %s", worker.namespace, worker.name, exc)
                failures += 1
                delay = min(get_config().backoff(failures - 1), self.resync_seconds)
                continue
            if current is None or current["metadata"].get("uid") != worker.uid:
                self.workers.pop(worker.uid, None)
                return
            if current["metadata"].get("deletionTimestamp"):
                delay = self.resync_seconds  # being deleted: nothing to apply; the DELETED event stops us
                continue
            try:
                result = await reconcile_and_report(current, self, self.logger)
            except KubeError as exc:
                self.logger.warning("Shop %s/%s: cannot report status: %s", worker.namespace, worker.name, exc)
                metrics.RECONCILES.labels("error").inc()
                result = None
            except Exception:  # a bug must not end the Shop's resync loop silently
                self.logger.exception("Shop %s/%s: reconcile crashed", worker.namespace, worker.name)
                metrics.RECONCILES.labels("error").inc()
                result = None
            if result is not None and (result.succeeded or (result.failure and result.failure.permanent)):
                failures = 0
                delay = self.resync_seconds
            else:
                failures += 1
                delay = min(get_config().backoff(failures - 1), self.resync_seconds)


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime


async def reconcile_and_report(body: Mapping[str, Any], runtime: Runtime, logger: Logger) -> Result:
    """Reconcile under the Shop's lock, then write status only if it changed and post transition events."""
    shop = ShopRef.of(body)
    async with runtime.lock(shop.uid):
        with metrics.RECONCILE_SECONDS.time():
            result = await runtime.reconciler.reconcile(body)
        metrics.RECONCILES.labels(metrics.result_label(result.succeeded, result.paused)).inc()
        # Re-read: a handler may hold an older body than the live object when the status is compared.
        current = await runtime.kube.get(SHOP, shop.namespace, shop.name)
        if current is None or current["metadata"].get("uid") != shop.uid:
            return result
        old_status: Mapping[str, Any] = current.get("status") or {}
        # Only a generation that was applied is observed: not while paused, not after a failure.
        observed = shop.generation if (result.succeeded and not result.paused) else None
        new_status = status_mod.build_status(
            old_status, generation=shop.generation, observed_generation=observed,
            components=result.components, failure=result.failure, paused=result.paused, url=result.url)
        metrics.shop_phase(shop.uid, new_status.get("phase"))
        patch = status_mod.status_patch(old_status, new_status)
        target = kopf.Body(cast(kopf.RawBody, current))  # what events are posted about
        if patch is not None:
            await runtime.kube.patch_status(SHOP, shop.namespace, shop.name, patch)
            for type_, reason, message, cond in status_mod.transitions(old_status.get("conditions"),
                                                                       new_status["conditions"]):
                kopf.event(target, type=type_, reason=reason, message=f"{cond}: {message}"[:1000])
        if result.pruned:
            kopf.info(target, reason="Pruned", message=", ".join(result.pruned)[:1000])
        if result.created_secrets:
            kopf.info(target, reason="SecretCreated", message=", ".join(result.created_secrets))
        if result.failure is not None:
            logger.warning("Shop %s/%s: reconcile failed: %s: %s", shop.namespace, shop.name,
                           result.failure.reason, result.failure.message)
        else:
            logger.debug("Shop %s/%s reconciled: %d applied, %d pruned", shop.namespace, shop.name,
                         len(result.applied), len(result.pruned))
        return result


async def apply_crd(kube: Kube, chart: Path, logger: Logger) -> None:
    """The Shop CRD of this operator's chart, by server-side apply: ``helm upgrade`` never upgrades a chart's
    ``crds/``, so a new schema arrives with the operator that needs it. Done by the leader (or the only
    replica), before any Shop is watched, so a standby of an older version never takes the schema back."""
    while True:
        try:
            applied = await kube.apply(crd_of(chart))
            break
        except KubeError as exc:
            if exc.status not in (0, 429) and exc.status < 500:
                raise kopf.PermanentError(f"cannot apply the Shop CRD (the chart's ClusterRole grants it): "
                                          f"{exc}") from exc
            logger.warning("cannot apply the Shop CRD yet, retrying in 5s: %s", exc)
            await asyncio.sleep(5)
    logger.info("Shop CRD %s applied (generation %s)", applied["metadata"]["name"],
                applied["metadata"].get("generation"))


def shut_down() -> None:
    """The lease is lost: stop as on SIGTERM (kopf's graceful exit); the pod restarts as a standby."""
    os.kill(os.getpid(), signal.SIGTERM)


def _owner_uid(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "Shop" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def child_changed(event: Mapping[str, Any], meta: Mapping[str, Any], memo: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    uid = _owner_uid(meta)
    if isinstance(runtime, Runtime) and uid is not None:
        runtime.wake(uid)
