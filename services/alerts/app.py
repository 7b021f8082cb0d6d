"""``create_app``: the alerts service (alerts HTTP API, the WebSocket push, event consumers, outbox relay)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from litestar import Litestar

from alerts import inbox as inbox_module
from alerts.controllers import AlertController
from alerts.inbox import Inbox
from alerts.notifier import Notifier
from alerts.push import Channels, PushHub
from alerts.settings import Settings
from alerts.ws import alerts_socket
from shopkit.app import Resources, Service, Uses
from shopkit.contracts.events import OrderCreated, OrderUpdated, StockLow
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    settings: Settings
    inbox: Inbox
    hub: PushHub
    notifier: Notifier


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = settings if isinstance(settings, Settings) else Settings()

    @contextlib.asynccontextmanager
    async def build(res: Resources) -> AsyncIterator[Deps]:
        await inbox_module.ensure_indexes(res.db)
        hub = PushHub(res.cache, Channels(config.namespace))
        await hub.start()
        try:
            yield Deps(config, Inbox(res.db), hub, Notifier(res.client, res.db, res.outbox, hub))
        finally:
            await hub.stop()

    service = Service(
        config,
        title="microshop alerts",
        description="Alerts for customers (their orders) and admins (low stock), and their live WebSocket push "
                    "at /alerts/ws.",
        routes=[AlertController, alerts_socket],
        deps=Deps,
        build=build,
        uses=Uses(redis=True, events=True, outbox=True),
    )
    service.consume(OrderCreated, lambda deps: deps.notifier.on_order_events)
    service.consume(OrderUpdated, lambda deps: deps.notifier.on_order_events)
    service.consume(StockLow, lambda deps: deps.notifier.on_stock_low)
    return service.app()
