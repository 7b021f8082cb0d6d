"""kopf handlers for Shops: reconcile on create/update/resume, resync in a daemon, report status.

Handlers stay short; the work is in :mod:`microshop_operator.reconcile` (what to apply) and
:mod:`microshop_operator.status` (what to report).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from microshop_operator import status as status_mod
from microshop_operator.config import GROUP, PLURAL, SHOP_LABEL, VERSION, ConfigError, get_config
from microshop_operator.kube import Kind, Kube, KubeError
from microshop_operator.reconcile import Reconciler, Result, ShopRef
from microshop_operator.render import Renderer

Logger = logging.Logger | logging.LoggerAdapter[Any]

SHOP = Kind(f"{GROUP}/{VERSION}", "Shop", PLURAL)
# kopf keeps its bookkeeping in annotations under our own prefix, never in status (which we own).
ANNOTATION_PREFIX = "microshop.dev"


@dataclass
class Runtime:
    """Process-wide state, kept in kopf's memo."""

    reconciler: Reconciler
    kube: Kube
    resync_seconds: float
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    wakeups: dict[str, asyncio.Event] = field(default_factory=dict)

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def wakeup(self, uid: str) -> asyncio.Event:
        return self.wakeups.setdefault(uid, asyncio.Event())

    def forget(self, uid: str) -> None:
        self.locks.pop(uid, None)
        self.wakeups.pop(uid, None)


def runtime_of(memo: Any) -> Runtime:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return runtime


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    try:
        config = get_config()
    except ConfigError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # our own events say what matters; no "handler succeeded" noise
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    kube = Kube()
    renderer = Renderer(config.helm, config.chart, timeout=config.helm_timeout_seconds)
    memo.runtime = Runtime(reconciler=Reconciler(kube, renderer, logger), kube=kube,
                           resync_seconds=config.resync_seconds)
    logger.info("chart %s, helm %s, resync every %ss", config.chart, config.helm, config.resync_seconds)


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if isinstance(runtime, Runtime):
        runtime.kube.close()


@kopf.on.probe(id="chart")
def chart_present(**_: Any) -> bool:
    """Liveness detail: the chart the operator renders is where it is configured to be."""
    return (get_config().chart / "Chart.yaml").is_file()


async def reconcile_and_report(body: kopf.Body, runtime: Runtime, logger: Logger) -> Result:
    """Reconcile under the Shop's lock, then write status only if it changed and post transition events."""
    shop = ShopRef.of(body)
    async with runtime.lock(shop.uid):
        result = await runtime.reconciler.reconcile(body)
        # Re-read: a handler may hold an older body than the live object when the status is compared.
        current = await runtime.kube.get(SHOP, shop.namespace, shop.name)
        if current is None or current["metadata"].get("uid") != shop.uid:
            return result
        old_status: Mapping[str, Any] = current.get("status") or {}
        observed = shop.generation if (result.succeeded or result.paused) else None
        new_status = status_mod.build_status(
            old_status, generation=shop.generation, observed_generation=observed,
            components=result.components, failure=result.failure, paused=result.paused, url=result.url)
        patch = status_mod.status_patch(old_status, new_status)
        if patch is not None:
            await runtime.kube.patch_status(SHOP, shop.namespace, shop.name, patch)
            for type_, reason, message, cond in status_mod.transitions(old_status.get("conditions"),
                                                                       new_status["conditions"]):
                kopf.event(body, type=type_, reason=reason, message=f"{cond}: {message}"[:1000])
        if result.pruned:
            kopf.info(body, reason="Pruned", message=", ".join(result.pruned)[:1000])
        if result.created_secrets:
            kopf.info(body, reason="SecretCreated", message=", ".join(result.created_secrets))
        if result.failure is not None:
            logger.warning("reconcile failed: %s: %s", result.failure.reason, result.failure.message)
        else:
            logger.debug("reconciled: %d applied, %d pruned", len(result.applied), len(result.pruned))
        return result


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_shop(body: kopf.Body, memo: Any, retry: int, logger: Logger,
                         **_: Any) -> None:
    runtime = runtime_of(memo)
    try:
        result = await reconcile_and_report(body, runtime, logger)
    except KubeError as exc:  # the status write itself failed: the API server is unwell, try again later
        raise kopf.TemporaryError(f"cannot report status: {exc}", delay=get_config().backoff(retry)) from exc
    if result.failure is not None:
        if result.failure.permanent:
            raise kopf.PermanentError(f"{result.failure.reason}: {result.failure.message}")
        raise kopf.TemporaryError(f"{result.failure.reason}: {result.failure.message}",
                                  delay=get_config().backoff(retry))


@kopf.daemon(GROUP, VERSION, PLURAL, id="resync", cancellation_timeout=10)
async def resync(stopped: kopf.DaemonStopped, body: kopf.Body, memo: Any, logger: Logger,
                 **_: Any) -> None:
    """Level-based repair: re-apply and refresh status every resync period, or at once when a child changes."""
    runtime = runtime_of(memo)
    uid = body["metadata"]["uid"]
    wakeup = runtime.wakeup(uid)
    failures = 0
    try:
        while not stopped:
            delay = runtime.resync_seconds if failures == 0 else min(get_config().backoff(failures - 1),
                                                                      runtime.resync_seconds)
            await _wait_for_any(stopped, wakeup, delay)
            wakeup.clear()
            if stopped:
                break
            if body.get("metadata", {}).get("deletionTimestamp"):
                continue
            try:
                result = await reconcile_and_report(body, runtime, logger)
            except KubeError as exc:
                logger.warning("resync could not report status: %s", exc)
                failures += 1
                continue
            failures = 0 if result.succeeded or (result.failure and result.failure.permanent) else failures + 1
    finally:
        runtime.forget(uid)


async def _wait_for_any(stopped: kopf.DaemonStopped, wakeup: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


def _owner_uid(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "Shop" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _child_changed(event: Mapping[str, Any], meta: Mapping[str, Any], memo: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    uid = _owner_uid(meta)
    if isinstance(runtime, Runtime) and uid is not None and uid in runtime.wakeups:
        runtime.wakeups[uid].set()


# Children the shop reads status from or that users are likely to touch by hand: react at once
# instead of at the next resync. Everything else is repaired by the periodic resync.
@kopf.on.event("apps", "v1", "deployments", labels={SHOP_LABEL: kopf.PRESENT})
@kopf.on.event("apps", "v1", "statefulsets", labels={SHOP_LABEL: kopf.PRESENT})
def child_event(event: kopf.RawEvent, meta: kopf.Meta, memo: Any, **_: Any) -> None:
    _child_changed(event, meta, memo)


def _wants_volume_cleanup(spec: kopf.Spec, **_: Any) -> bool:
    return bool((spec.get("deletion") or {}).get("deletePersistentVolumeClaims"))


# The finalizer exists only on Shops that asked for their volumes to go; bounded retries mean it
# is released even if the PVCs cannot be deleted (kopf removes it once the handler gives up).
@kopf.on.delete(GROUP, VERSION, PLURAL, when=_wants_volume_cleanup, retries=5, backoff=2, timeout=120)
async def delete_volumes(body: kopf.Body, memo: Any, logger: Logger, **_: Any) -> None:
    runtime = runtime_of(memo)
    try:
        deleted = await runtime.reconciler.delete_volumes(body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"cannot delete the shop's volumes: {exc}", delay=2) from exc
    logger.info("deleted PersistentVolumeClaims: %s", ", ".join(deleted) or "none")
