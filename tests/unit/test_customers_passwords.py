"""customers.passwords: at most ``concurrency`` hashes run; the rest wait while their expected wait stays within
``max_wait_seconds``, beyond it they get 503 + Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from customers.passwords import PasswordHashing, hash_queue_depth
from customers.settings import Settings
from shopkit.errors import ProblemError

CHEAP = {"password_hash_memory_kib": 8, "password_hash_time_cost": 1, "password_hash_parallelism": 1}


async def test_hash_and_verify_use_the_configured_parameters() -> None:
    pool = PasswordHashing(Settings(**CHEAP, password_hash_concurrency=1))
    try:
        stored = await pool.hash("correct horse battery")
        assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
        assert await pool.verify(stored, "correct horse battery")
        assert not await pool.verify(stored, "wrong")
        assert not await pool.verify("not a hash", "wrong")
        # A hash made with other parameters still verifies, and is flagged for an upgrade.
        assert pool.needs_rehash(PasswordHashing(Settings(**{**CHEAP, "password_hash_time_cost": 2})).dummy_hash)
    finally:
        pool.close()


async def test_a_burst_within_the_wait_budget_waits_instead_of_being_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 at once on 2 threads, 50 ms each: the last waits about 1 s, within a 5 s budget (no count bound)."""
    pool = PasswordHashing(Settings(**CHEAP, password_hash_concurrency=2, password_hash_max_wait_seconds=5))

    def check(password_hash: str, password: str) -> bool:
        time.sleep(0.05)
        return True

    monkeypatch.setattr(pool, "_check", check)
    try:
        assert await asyncio.gather(*(pool.verify("h", "p") for _ in range(40))) == [True] * 40
        assert 0.04 < pool.seconds_per_hash < 0.5  # learnt from the hashes it ran
    finally:
        pool.close()


async def test_beyond_the_wait_budget_the_answer_is_503_with_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = PasswordHashing(Settings(**CHEAP, password_hash_concurrency=2, password_hash_max_wait_seconds=1))
    pool.seconds_per_hash = 0.5  # as if learnt: one more waiter adds 0.25 s (two threads)
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_check(password_hash: str, password: str) -> bool:
        started.release()
        release.wait(10)
        return True

    monkeypatch.setattr(pool, "_check", slow_check)
    try:
        # With k admitted, a newcomer expects (k - 1) / 2 x 0.5 s: admitted while that is <= 1 s, so 6 in all.
        admitted = [asyncio.create_task(pool.verify("h", "p")) for _ in range(6)]
        for _ in range(2):
            await asyncio.to_thread(started.acquire)  # both threads busy; four wait
        assert hash_queue_depth() == 4
        with pytest.raises(ProblemError) as refused:
            await pool.verify("h", "p")
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": "1"}  # 1.25 s expected, 0.25 s over the budget
        pool.seconds_per_hash = 4.0  # slower hashes: the same queue is further over the budget
        with pytest.raises(ProblemError) as refused:
            await pool.verify("h", "p")
        assert refused.value.headers == {"Retry-After": "9"}  # 10 s expected, 9 s over
        release.set()
        assert await asyncio.gather(*admitted) == [True] * 6
        assert hash_queue_depth() == 0
        assert await pool.verify("h", "p")  # room again
    finally:
        release.set()
        pool.close()
    assert hash_queue_depth() == 0
