"""The shared status ranking agrees with the orders service's transition table."""

from __future__ import annotations

from orders.statuses import TRANSITIONS, OrderStatus
from shopkit.orderstatus import RANK, is_newer, older_than


def test_every_order_status_is_ranked() -> None:
    assert set(RANK) == {s.value for s in OrderStatus}


def test_every_transition_moves_forward_in_rank() -> None:
    for frm, to in TRANSITIONS:
        assert is_newer(to, frm), f"{frm} -> {to} would look like a step back to consumers"


def test_statuses_that_exclude_each_other_share_no_path() -> None:
    # Same rank means neither can follow the other: a late event of one never replaces the other.
    for a in OrderStatus:
        for b in OrderStatus:
            if a != b and RANK[a] == RANK[b]:
                assert (a, b) not in TRANSITIONS and (b, a) not in TRANSITIONS


def test_older_than_lists_exactly_the_lower_ranks() -> None:
    assert set(older_than("shipped")) == {"pending", "confirmed", "rejected"}
    assert older_than("pending") == []
    assert is_newer("pending", None)  # any known status beats "no status yet"
