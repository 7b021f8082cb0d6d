"""The push hub never waits on a slow client, and visibility rules of the inbox (no network)."""

from __future__ import annotations

from typing import Any

from alerts.inbox import ADMINS, AlertOut, visible_filter
from alerts.push import Channels, PushHub, Subscriber
from shopkit.auth import Principal
from shopkit.orderstatus import is_newer, older_than


def test_a_full_queue_marks_only_that_client_overflowed_and_others_get_everything() -> None:
    hub = PushHub(redis=None, channels=Channels("ns."))  # type: ignore[arg-type]  # dispatch needs no Redis
    slow, fast = Subscriber(queue_size=2), Subscriber(queue_size=100)
    channel = hub.channels.user("u1")
    hub._local[channel] = {slow, fast}
    delivered = [hub.dispatch(channel, f"frame-{i}") for i in range(5)]
    assert delivered == [2, 2, 1, 1, 1]
    assert slow.overflowed.is_set() and slow.dropped == 3 and slow.queue.qsize() == 2
    assert not fast.overflowed.is_set() and fast.queue.qsize() == 5
    assert hub.dispatch(hub.channels.user("someone-else"), "x") == 0


def test_channels_are_namespaced_per_user_and_admins_also_get_the_role_channel() -> None:
    ch = Channels("t1.")
    assert ch.for_principal("u1", "customer") == ["t1.alerts:ws:user:u1"]
    assert ch.for_principal("a1", "admin") == ["t1.alerts:ws:user:a1", "t1.alerts:ws:role:admin"]


def test_status_ranks_never_go_back() -> None:
    assert is_newer("confirmed", "pending") and not is_newer("pending", "confirmed")
    assert not is_newer("confirmed", "rejected")
    assert set(older_than("cancelled")) == {"pending", "confirmed", "rejected", "shipped"}


def test_read_state_is_per_admin_for_role_alerts_and_the_recipients_otherwise() -> None:
    doc: dict[str, Any] = {"_id": "a", "recipient": ADMINS, "type": "stock_low", "message": "m", "data": {},
                           "created_at": "2026-11-22T00:00:00Z", "read_by": ["admin-1"]}
    assert AlertOut.for_viewer(doc, Principal("admin-1", "admin")).read is True
    assert AlertOut.for_viewer(doc, Principal("admin-2", "admin")).read is False
    assert visible_filter(Principal("c1", "customer"), None) == {"recipient": "user:c1"}
    assert visible_filter(Principal("c1", "customer"), True) == {"recipient": "user:c1", "read": {"$ne": True}}
    assert visible_filter(Principal("a1", "admin"), None) == {}
