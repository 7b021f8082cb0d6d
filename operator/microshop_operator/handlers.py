"""The kopf handlers for Shops, and nothing else: each hands its event to :mod:`microshop_operator.workers`.

Only the volume clean-up of Shops that ask for it has a finalizer; every Shop's resync loop is a
worker of our own, started, woken and stopped from the watch events below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from microshop_operator import metrics
from microshop_operator.config import GROUP, PLURAL, SHOP_LABEL, VERSION, ConfigError, get_config, lease_config
from microshop_operator.kube import Kube, KubeError
from microshop_operator.leader import LeaderElector
from microshop_operator.reconcile import Reconciler
from microshop_operator.render import Renderer
from microshop_operator.workers import (
    Logger,
    QuietHandlers,
    Runtime,
    apply_crd,
    child_changed,
    runtime_of,
    shut_down,
)

# kopf keeps its bookkeeping in annotations under our own prefix, never in status (which we own).
ANNOTATION_PREFIX = "microshop.dev"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    try:
        config = get_config()
        lease = lease_config()
    except ConfigError as exc:
        raise kopf.PermanentError(str(exc)) from exc
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # our own events say what matters; no "handler succeeded" noise
    # The namespaces to serve are given (--namespace/--all-namespaces): no listing of namespaces or
    # CRDs, so no cluster-wide permission is needed for them.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    logging.getLogger("kopf.objects").addFilter(QuietHandlers())
    kube = Kube()
    renderer = Renderer(config.helm, config.chart, timeout=config.helm_timeout_seconds)
    log = logging.getLogger("microshop_operator")
    runtime = Runtime(reconciler=Reconciler(kube, renderer, log), kube=kube,
                      resync_seconds=config.resync_seconds, logger=log)
    if lease is not None:
        # Before any handler runs: kopf starts watching only once start-up handlers are done.
        runtime.elector = LeaderElector(kube, lease, logger)
        await runtime.elector.acquire()
        runtime.renewer = asyncio.create_task(runtime.elector.hold(shut_down), name="lease renewal")
    await apply_crd(kube, config.chart, logger)
    memo.runtime = runtime
    metrics.serve()  # /metrics on MICROSHOP_OPERATOR_METRICS_PORT (8081), apart from kopf's liveness
    logger.info("chart %s, helm %s, resync every %ss", config.chart, config.helm, config.resync_seconds)


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if isinstance(runtime, Runtime):
        await runtime.stop_all()
        if runtime.renewer is not None:
            runtime.renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runtime.renewer
        if runtime.elector is not None:
            await runtime.elector.release()
        runtime.kube.close()


@kopf.on.probe(id="chart")
def chart_present(**_: Any) -> bool:
    """Liveness detail: the chart the operator renders is where it is configured to be."""
    return (get_config().chart / "Chart.yaml").is_file()


# Every event of every Shop (the initial listing included): start its worker, wake it on a new
# generation (so a reverted spec is applied at once), stop it when the Shop is gone.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def shop_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    runtime = getattr(memo, "runtime", None)
    if not isinstance(runtime, Runtime):
        return
    if event.get("type") == "DELETED":
        runtime.stop(str(body["metadata"]["uid"]))
    else:
        runtime.observe(body)


# Children the shop reads status from or that users are likely to touch by hand: react at once
# instead of at the next resync. Everything else is repaired by the periodic resync.
@kopf.on.event("apps", "v1", "deployments", labels={SHOP_LABEL: kopf.PRESENT})
@kopf.on.event("apps", "v1", "statefulsets", labels={SHOP_LABEL: kopf.PRESENT})
async def child_event(event: kopf.RawEvent, meta: kopf.Meta, memo: Any, **_: Any) -> None:
    child_changed(event, meta, memo)


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
