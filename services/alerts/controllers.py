"""HTTP routes of the alerts service. Each route's docstring says who may call it."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from alerts.inbox import AlertOut, AlertPage, Inbox
from shopkit.app import BEARER
from shopkit.auth import Principal, requires_customer
from shopkit.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]
    guards = [requires_customer]
    security = BEARER

    @get("/", summary="The caller's alerts, newest first")
    async def list_alerts(
        self,
        principal: NamedDependency[Principal],
        inbox: NamedDependency[Inbox],
        unread: bool | None = Parameter(default=None, description="true: only unread; false: only read"),
        limit: int = Parameter(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
        offset: int = Parameter(default=0, ge=0, le=1_000_000),
    ) -> AlertPage:
        """Signed-in users: customers see their own alerts; admins see every alert (customers' and the admins'
        stock alerts). `read` is the caller's own read state (an admin's view of a customer's alert shows the
        customer's)."""
        return await inbox.page(principal, unread=unread, limit=limit, offset=offset)

    @post("/{alert_id:str}/read", status_code=200, summary="Mark an alert read")
    async def mark_read(self, alert_id: FromPath[str], principal: NamedDependency[Principal],
                        inbox: NamedDependency[Inbox]) -> AlertOut:
        """Signed-in users, for alerts addressed to them (admins: also the admins' alerts, each admin has their
        own read state). Idempotent. 404 for an alert the caller cannot see."""
        return await inbox.mark_read(principal, alert_id)
