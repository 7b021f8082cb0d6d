"""``create_app``: the alerts service (alerts HTTP API, the WebSocket push, event consumers, outbox relay)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from litestar import Litestar
from pymongo.asynchronous.database import AsyncDatabase

from alerts import inbox as inbox_module
from alerts.controllers import AlertController
from alerts.inbox import Inbox
from alerts.notifier import Notifier
from alerts.push import Channels, PushHub
from alerts.settings import Settings
from alerts.sockets import SocketLimits
from alerts.ws import alerts_socket
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import AlertSent, OrderCreated, OrderUpdated, StockLow
from shopkit.mongo import utcnow
from shopkit.settings import ServiceSettings
from shopkit.tasks import cancel

log = logging.getLogger("alerts.app")


@dataclass
class Deps:
    settings: Settings
    inbox: Inbox
    hub: PushHub
    notifier: Notifier
    sockets: SocketLimits


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        """The push hub listens on Redis pub/sub for as long as the service runs."""
        await inbox_module.ensure_indexes(res.db)
        hub = PushHub(res.redis, Channels(config.namespace))
        await hub.start()
        purger = asyncio.create_task(purge_read_alerts(res.db, config), name="alerts-purge")
        try:
            limits = SocketLimits(res.redis, config.namespace, max_per_user=config.ws_max_sockets_per_user,
                                  attempts=config.ws_connect_attempts, window_seconds=config.ws_connect_window_seconds)
            yield Deps(config, Inbox(res.db), hub, Notifier(res.client, res.db, res.outbox, hub), limits)
        finally:
            await cancel(purger)
            await hub.stop()

    return Service(
        Settings, config, build=build, routes=[AlertController, alerts_socket],
        # One batch (one transaction) serves the deliveries of all three queues.
        consumes={(OrderCreated, OrderUpdated, StockLow): lambda deps: deps.notifier.handle},
        publishes=(AlertSent,),
        uses=Uses(redis=True, events=True, outbox=True, ready_without=frozenset({"broker"})),
        title="microshop alerts",
        description="Alerts for customers (their orders) and admins (low stock), and their live WebSocket push "
                    "at /alerts/ws.",
    ).app()


async def purge_read_alerts(db: AsyncDatabase[Any], settings: Settings) -> None:
    """Every ``alert_purge_seconds``: delete read alerts older than ``alert_read_retention_seconds``."""
    if not settings.alert_read_retention_seconds:
        return
    while True:
        try:
            cutoff = utcnow() - timedelta(seconds=settings.alert_read_retention_seconds)
            if purged := await inbox_module.purge_read(db, cutoff):
                log.info("purged %d read alert(s) created before %s", purged, cutoff.isoformat())
        except Exception as exc:
            log.warning("purging read alerts failed (%s: %s)", type(exc).__name__, exc)
        await asyncio.sleep(settings.alert_purge_seconds)
