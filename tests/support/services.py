"""The shop's services as the tests list them: read from the registry (services/shopkit/registry.py).

Tests that need "every service", "every service on the bus" and so on take the list from here, so a new
service reaches them through its one registry entry.
"""

from __future__ import annotations

from shopkit import registry

# Registry order: customers, products, orders, alerts, analytics, gateway.
ALL: tuple[str, ...] = registry.names()
# The chart's order (its values, the operator's spec): the entry point first.
CHART_ORDER: tuple[str, ...] = registry.names(registry.chart_order())
# The services the gateway forwards to, in its settings' order.
UPSTREAMS: tuple[str, ...] = registry.names(registry.upstreams())
# The services with an event bus (they consume and publish events).
ON_BUS: tuple[str, ...] = registry.names(registry.on_bus())
# Who gets an own user on the managed MongoDB / RabbitMQ, sorted.
DATABASE_USERS: tuple[str, ...] = registry.users_of(registry.MONGODB)
BROKER_USERS: tuple[str, ...] = registry.users_of(registry.RABBITMQ)
# The services with their own database, in registry order.
ON_DATABASE: tuple[str, ...] = tuple(s.name for s in registry.SERVICES if s.uses(registry.MONGODB))
