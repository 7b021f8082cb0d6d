"""``create_app``: the alerts service (alerts HTTP API, the WebSocket push, event consumers, outbox relay)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from litestar import Litestar
from litestar.di import Provide

from alerts import inbox as inbox_module
from alerts.controllers import AlertController
from alerts.inbox import Inbox
from alerts.notifier import Notifier
from alerts.push import Channels, PushHub
from alerts.settings import Settings
from alerts.ws import alerts_socket
from shopkit.app import Resources, create_service_app
from shopkit.broker import EventBus, create_broker
from shopkit.events import ORDER_CREATED, ORDER_UPDATED, STOCK_LOW, CloudEvent
from shopkit.outbox import OutboxRelay, ensure_outbox_indexes
from shopkit.settings import ServiceSettings

READY_TIMEOUT_SECONDS = 30.0


@dataclass
class Runtime:
    """What the handlers need, built once Mongo and Redis are connected."""

    notifier: Notifier | None = None
    inbox: Inbox | None = None
    relay: OutboxRelay | None = None
    hub: PushHub | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_ready(self) -> Notifier:
        # Consumers start with the broker, before the startup hook has built the handlers.
        await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_SECONDS)
        assert self.notifier is not None
        return self.notifier


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    bus = EventBus(settings, create_broker(settings))
    runtime = Runtime()

    async def on_order_event(event: CloudEvent) -> None:
        await (await runtime.wait_ready()).on_order_event(event)

    async def on_stock_low(event: CloudEvent) -> None:
        await (await runtime.wait_ready()).on_stock_low(event)

    bus.subscribe(ORDER_CREATED, on_order_event)
    bus.subscribe(ORDER_UPDATED, on_order_event)
    bus.subscribe(STOCK_LOW, on_stock_low)

    async def startup(resources: Resources) -> None:
        assert resources.mongo_client is not None and resources.redis is not None
        db = resources.db
        await inbox_module.ensure_indexes(db)
        await ensure_outbox_indexes(db)
        hub = PushHub(resources.redis, Channels(settings.namespace))
        await hub.start()
        relay = OutboxRelay(db, bus)
        relay.start()
        runtime.hub, runtime.relay = hub, relay
        runtime.inbox = Inbox(db)
        runtime.notifier = Notifier(resources.mongo_client, db, relay, hub)
        resources.extras["push_hub"] = hub
        runtime.ready.set()

    async def shutdown(resources: Resources) -> None:
        if runtime.relay is not None:
            await runtime.relay.stop()
        if runtime.hub is not None:
            await runtime.hub.stop()

    def provide_inbox() -> Inbox:
        assert runtime.inbox is not None
        return runtime.inbox

    return create_service_app(
        settings,
        title="microshop alerts",
        description="Alerts for customers (their orders) and admins (low stock), and their live WebSocket push "
                    "at /alerts/ws.",
        route_handlers=[AlertController, alerts_socket],
        use_redis=True,
        bus=bus,
        on_startup=[startup],
        on_shutdown=[shutdown],
        dependencies={"inbox": Provide(provide_inbox, sync_to_thread=False)},
    )
