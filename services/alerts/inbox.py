"""Stored alerts and who may see and mark them: the read side of the alerts service.

An alert has one recipient, ``user:<id>`` (a customer's order alerts) or ``role:admin`` (stock alerts),
so an admin created tomorrow still sees today's stock alerts. A role alert keeps ``read_by``, so each
admin has their own read state. A customer sees their own alerts, an admin every alert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shopkit.auth import Principal
from shopkit.errors import ProblemError

ALERTS = "alerts"
ADMINS = "role:admin"


def user_recipient(user_id: str) -> str:
    return f"user:{user_id}"


class AlertOut(BaseModel):
    id: str
    type: str
    message: str
    data: dict[str, Any]
    read: bool
    created_at: datetime

    @classmethod
    def for_viewer(cls, doc: dict[str, Any], viewer: Principal | None) -> AlertOut:
        if doc["recipient"] == ADMINS:
            read = viewer is not None and viewer.id in doc.get("read_by", [])
        else:
            read = bool(doc.get("read", False))
        return cls(id=str(doc["_id"]), type=doc["type"], message=doc["message"], data=doc.get("data", {}),
                   read=read, created_at=doc["created_at"])


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    await db[ALERTS].create_index([("recipient", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
    await db[ALERTS].create_index([("created_at", DESCENDING), ("_id", DESCENDING)])


async def purge_read(db: AsyncDatabase[Any], older_than: datetime) -> int:
    """Delete the read alerts created before ``older_than`` (a stock alert: read by some admin); returns how many."""
    result = await db[ALERTS].delete_many({"created_at": {"$lt": older_than}, "$or": [
        {"recipient": {"$ne": ADMINS}, "read": True},
        {"recipient": ADMINS, "read_by": {"$exists": True, "$ne": []}},
    ]})
    return int(result.deleted_count)


def visible_filter(principal: Principal, unread: bool | None) -> dict[str, Any]:
    mine = user_recipient(principal.id)
    if not principal.is_admin:
        flt: dict[str, Any] = {"recipient": mine}
        if unread is not None:
            flt["read"] = {"$ne": True} if unread else True
        return flt
    if unread is None:
        return {}
    if unread:
        return {"$or": [{"recipient": ADMINS, "read_by": {"$ne": principal.id}},
                        {"recipient": {"$ne": ADMINS}, "read": {"$ne": True}}]}
    return {"$or": [{"recipient": ADMINS, "read_by": principal.id},
                    {"recipient": {"$ne": ADMINS}, "read": True}]}


class Inbox:
    def __init__(self, db: AsyncDatabase[Any]) -> None:
        self.alerts = db[ALERTS]

    async def page(self, principal: Principal, *, unread: bool | None, limit: int, offset: int) -> AlertPage:
        flt = visible_filter(principal, unread)
        cursor = self.alerts.find(flt).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).skip(offset)
        docs = await cursor.limit(limit).to_list(limit)
        total = await self.alerts.count_documents(flt)
        return AlertPage(items=[AlertOut.for_viewer(d, principal) for d in docs], total=total, limit=limit,
                         offset=offset)

    async def mark_read(self, principal: Principal, alert_id: str) -> AlertOut:
        """Idempotent. 404 for an alert the caller may not see (no hint that it exists)."""
        doc = await self.alerts.find_one({"_id": alert_id})
        if doc is None or not (principal.is_admin or doc["recipient"] == user_recipient(principal.id)):
            raise ProblemError(404, f"alert {alert_id} does not exist", type_="alert-not-found")
        if doc["recipient"] == ADMINS:
            update: dict[str, Any] = {"$addToSet": {"read_by": principal.id}}
        elif doc["recipient"] == user_recipient(principal.id):
            update = {"$set": {"read": True}}
        else:
            raise ProblemError(403, "an admin sees every alert but marks only their own and the admins' ones read",
                               type_="not-your-alert")
        # An update and a read by _id, not ``findAndModify``: SecantusDB (the stand-in database) scans the
        # whole collection for a ``findAndModify`` whatever its filter (docs/saga.md, "Statements that scan").
        await self.alerts.update_one({"_id": alert_id}, update)
        updated = await self.alerts.find_one({"_id": alert_id})
        if updated is None:  # purged between the two statements (read alerts expire)
            raise ProblemError(404, f"alert {alert_id} does not exist", type_="alert-not-found")
        return AlertOut.for_viewer(updated, principal)
