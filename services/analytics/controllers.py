"""HTTP routes of the analytics service. Each route's docstring says who may call it."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from analytics.dashboard import Dashboard, DashboardCache
from shopkit.app import BEARER
from shopkit.auth import requires_admin


class DashboardController(Controller):
    path = "/analytics"
    tags = ["analytics"]
    guards = [requires_admin]
    security = BEARER

    @get("/dashboard", summary="Orders, revenue, top products, low stock and the confirmation ratio")
    async def dashboard(self, dashboard_cache: NamedDependency[DashboardCache]) -> Dashboard:
        """Admin only. Served from a Redis cache that every event invalidates; never older than
        `MICROSHOP_DASHBOARD_MAX_STALENESS_SECONDS`. Amounts are integer minor units per currency; revenue days
        are UTC days of confirmation, net of later cancellations; `confirmed_ratio` is null until the saga has
        decided an order."""
        return await dashboard_cache.get()
