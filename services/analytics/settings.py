from __future__ import annotations

from pydantic import Field

from shopkit import registry
from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "analytics"
    port: int = Field(default=registry.get("analytics").port, ge=1, le=65535)

    # Upper bound on how old a served dashboard can be. Every committed event invalidates the cached one at
    # once; this TTL bounds staleness even when an invalidation is lost (Redis unreachable for a moment).
    dashboard_max_staleness_seconds: int = Field(default=30, ge=1, le=3600)
    # How many products "top_products" lists, and how many days back "revenue_by_day" goes (UTC days).
    top_products_limit: int = Field(default=10, ge=1, le=100)
    revenue_days: int = Field(default=90, ge=1, le=3660)
    # How long a batch's first event waits for company before its transaction (MICROSHOP_BATCH_HOLD_MS): an
    # order's five events reach analytics within ~100-200 ms at light load; holding for them makes one
    # transaction of them instead of five, and delays the dashboard by at most this much. 0: no hold.
    batch_hold_ms: float = Field(default=250.0, ge=0, le=5000)
