"""``create_app``: the alerts service (alerts HTTP API, the WebSocket push, event consumers, outbox relay)."""

from __future__ import annotations

from dataclasses import dataclass

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
from shopkit.settings import ServiceSettings


@dataclass
class Runtime:
    """What the handlers need, built once Mongo and Redis are connected."""

    notifier: Notifier | None = None
    inbox: Inbox | None = None
    hub: PushHub | None = None

    @property
    def handlers(self) -> Notifier:
        # Built at start-up; the kit starts consumers only after that.
        assert self.notifier is not None
        return self.notifier


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    bus = EventBus(settings, create_broker(settings))
    runtime = Runtime()

    async def on_order_event(event: CloudEvent) -> None:
        await runtime.handlers.on_order_event(event)

    async def on_stock_low(event: CloudEvent) -> None:
        await runtime.handlers.on_stock_low(event)

    bus.subscribe(ORDER_CREATED, on_order_event)
    bus.subscribe(ORDER_UPDATED, on_order_event)
    bus.subscribe(STOCK_LOW, on_stock_low)

    async def startup(resources: Resources) -> None:
        assert resources.mongo_client is not None and resources.redis is not None and resources.relay is not None
        db = resources.db
        await inbox_module.ensure_indexes(db)
        hub = PushHub(resources.redis, Channels(settings.namespace))
        await hub.start()
        runtime.hub = hub
        runtime.inbox = Inbox(db)
        runtime.notifier = Notifier(resources.mongo_client, db, resources.relay, hub)
        resources.extras["push_hub"] = hub

    async def shutdown(resources: Resources) -> None:
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
        use_outbox=True,
        on_startup=[startup],
        on_shutdown=[shutdown],
        dependencies={"inbox": Provide(provide_inbox, sync_to_thread=False)},
    )
