"""customers.passwords: at most ``concurrency`` hashes run, ``queue`` wait, the rest get 503 + Retry-After."""

from __future__ import annotations

import asyncio
import threading

import pytest

from customers import passwords
from customers.passwords import PasswordHashing, hash_queue_depth
from customers.settings import Settings
from shopkit.errors import ProblemError

CHEAP = {"password_hash_memory_kib": 8, "password_hash_time_cost": 1, "password_hash_parallelism": 1}


async def test_hash_and_verify_use_the_configured_parameters() -> None:
    pool = PasswordHashing(Settings(**CHEAP, password_hash_concurrency=1, password_hash_queue=0))
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


async def test_beyond_concurrency_plus_queue_the_answer_is_503_with_retry_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool = PasswordHashing(Settings(**CHEAP, password_hash_concurrency=2, password_hash_queue=3))
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_check(password_hash: str, password: str) -> bool:
        started.release()
        release.wait(10)
        return True

    monkeypatch.setattr(pool, "_check", slow_check)
    try:
        admitted = [asyncio.create_task(pool.verify("h", "p")) for _ in range(5)]
        for _ in range(2):
            await asyncio.to_thread(started.acquire)  # both threads busy; three wait
        assert hash_queue_depth() == 3
        with pytest.raises(ProblemError) as refused:
            await pool.verify("h", "p")
        assert refused.value.status_code == 503
        assert refused.value.headers == {"Retry-After": str(passwords.RETRY_AFTER_SECONDS)}
        release.set()
        assert await asyncio.gather(*admitted) == [True] * 5
        assert hash_queue_depth() == 0
        assert await pool.verify("h", "p")  # room again
    finally:
        release.set()
        pool.close()
    assert hash_queue_depth() == 0
