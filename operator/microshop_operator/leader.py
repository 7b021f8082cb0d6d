"""Active/standby replicas: a ``coordination.k8s.io/v1`` Lease, held by one replica at a time.

kopf's peering is not leader election (replicas of equal priority all pause), so the operator elects
a leader the way client-go does, before any handler runs:

* **acquire**: a replica takes the Lease when it does not exist, has no holder, or has not changed
  for ``leaseDurationSeconds`` *as observed by this replica's own clock* (no clock skew between
  nodes matters); otherwise it retries every ``retry_period``. The write is conditional on the
  ``resourceVersion`` read, so of two contenders exactly one wins.
* **renew**: the holder writes ``renewTime`` every ``retry_period``; if it cannot for
  ``renew_deadline`` (< lease duration), it stops acting at once and shuts down (``on_lost``), before
  any standby may take over.
* **release**: on a graceful shutdown the holder clears ``holderIdentity``, so a standby takes over
  at its next retry instead of waiting for the lease to expire.

Fail-over after a holder dies without releasing: at most lease duration + 2 x retry period after its
last renewal (one retry for the standby to observe the last change, one to see it expire), plus the
new leader's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp.web

from microshop_operator.config import LeaseConfig
from microshop_operator.kube import LEASE, Kube, KubeError

Logger = logging.Logger | logging.LoggerAdapter[Any]

# The liveness endpoint (``--liveness``) of this process, set by ``__main__``: a standby answers there
# until it leads (kopf serves its own probes only once start-up handlers, i.e. the election, are done).
standby_endpoint: str | None = None


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, kube: Kube, lease: LeaseConfig, logger: Logger) -> None:
        self.kube = kube
        self.lease = lease
        self.log = logger
        self.leading = False
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._last_renewal = 0.0

    @property
    def identity(self) -> str:
        return self.lease.identity

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it afterwards."""
        now = datetime.now(UTC)
        duration = math.ceil(self.lease.duration)
        current = await self.kube.get(LEASE, self.lease.namespace, self.lease.name)
        if current is None:
            body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind,
                    "metadata": {"name": self.lease.name, "namespace": self.lease.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                             "acquireTime": _micro_time(now), "renewTime": _micro_time(now),
                             "leaseTransitions": 0}}
            try:
                await self.kube.create(LEASE, self.lease.namespace, body)
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        version = str(current["metadata"].get("resourceVersion"))
        if version != self._observed_version:
            self._observed_version, self._observed_at = version, time.monotonic()
        spec = dict(current.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            expires = self._observed_at + float(spec.get("leaseDurationSeconds") or duration)
            if time.monotonic() < expires:
                return False
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
            self.log.info("taking the lease %s/%s from %r", self.lease.namespace, self.lease.name, holder or None)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=duration, renewTime=_micro_time(now))
        try:
            await self.kube.replace(LEASE, self.lease.namespace, {**current, "spec": spec})
        except KubeError as exc:
            if exc.status in (404, 409):  # someone else wrote first (or deleted it): re-read next time
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Return once this replica holds the Lease (answering liveness probes meanwhile)."""
        self.log.info("standing by for the lease %s/%s as %s", self.lease.namespace, self.lease.name,
                      self.identity)
        async with _standby_health(standby_endpoint):
            while True:
                try:
                    if await self._try():
                        break
                except KubeError as exc:
                    self.log.warning("cannot read or take the lease: %s", exc)
                await asyncio.sleep(self.lease.retry_period)
        self.leading = True
        self._last_renewal = time.monotonic()
        self.log.info("leading: this replica holds the lease %s/%s", self.lease.namespace, self.lease.name)

    async def hold(self, on_lost: Callable[[], None]) -> None:
        """Renew every retry period; once renewal failed for the renew deadline, stop leading and call on_lost."""
        while self.leading:
            await asyncio.sleep(self.lease.retry_period)
            try:
                renewed = await asyncio.wait_for(self._try(), timeout=self.lease.renew_deadline)
            except (KubeError, TimeoutError) as exc:
                self.log.warning("cannot renew the lease: %s", exc)
                renewed = False
            if renewed:
                self._last_renewal = time.monotonic()
            elif time.monotonic() - self._last_renewal >= self.lease.renew_deadline:
                self.leading = False
                self.log.error("lost the lease %s/%s: stopping", self.lease.namespace, self.lease.name)
                on_lost()

    async def release(self) -> None:
        """Give the Lease up (graceful shutdown): a standby takes over at its next retry."""
        if not self.leading:
            return
        self.leading = False
        with contextlib.suppress(KubeError):
            current = await self.kube.get(LEASE, self.lease.namespace, self.lease.name)
            spec = dict((current or {}).get("spec") or {})
            if current is not None and spec.get("holderIdentity") == self.identity:
                spec.update(holderIdentity=None, leaseDurationSeconds=1)
                await self.kube.replace(LEASE, self.lease.namespace, {**current, "spec": spec})
                self.log.info("released the lease %s/%s", self.lease.namespace, self.lease.name)


@contextlib.asynccontextmanager
async def _standby_health(endpoint: str | None) -> Any:
    """Serve 200 on the liveness endpoint while standing by; closed before kopf binds it."""
    if not endpoint:
        yield
        return
    url = urlparse(endpoint)

    async def ok(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"standby": True})

    app = aiohttp.web.Application()
    app.router.add_get(url.path or "/", ok)
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 80, reuse_address=True)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
