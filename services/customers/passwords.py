"""Password hashing with argon2id, bounded so that hashing can never take the service down.

At most ``password_hash_concurrency`` hashes run at once, in their own thread pool, each holding
``password_hash_memory_kib``. A call is admitted while its expected wait stays within
``password_hash_max_wait_seconds``, else refused at once with 503 + ``Retry-After``: a burst waits
its turn, a flood costs at most concurrency x memory (the chart's memory limit is sized from it,
``tests/charts/test_password_hash_budget.py``).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from customers.settings import Settings
from shopkit.errors import ProblemError
from shopkit.metrics import password_hash_queue_depth

T = TypeVar("T")
# Weight of the latest hash in the moving average of hash durations.
SMOOTHING = 0.2

_active: PasswordHashing | None = None


def hash_queue_depth() -> int:
    """How many hashes wait for a thread right now in this process (a gauge hook for metrics)."""
    return _active.waiting if _active is not None else 0


class PasswordHashing:
    def __init__(self, settings: Settings) -> None:
        global _active
        self.hasher = PasswordHasher(time_cost=settings.password_hash_time_cost,
                                     memory_cost=settings.password_hash_memory_kib,
                                     parallelism=settings.password_hash_parallelism)
        self.concurrency = settings.password_hash_concurrency
        self.max_wait_seconds = settings.password_hash_max_wait_seconds
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="argon2")
        self._admitted = 0
        # Verified when an email is unknown, so a login takes as long whether or not the account exists.
        started = time.perf_counter()
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        self.seconds_per_hash = time.perf_counter() - started  # then a moving average of the hashes run
        _active = self

    @property
    def waiting(self) -> int:
        return max(0, self._admitted - self.concurrency)

    def expected_wait(self) -> float:
        """Seconds a call arriving now would wait for a thread."""
        ahead = self._admitted - self.concurrency + 1
        return max(0, ahead) / self.concurrency * self.seconds_per_hash

    @staticmethod
    def _timed(fn: Callable[..., T], *args: str) -> tuple[T, float]:
        started = time.perf_counter()
        result = fn(*args)
        return result, time.perf_counter() - started

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        wait = self.expected_wait()
        if wait > self.max_wait_seconds:
            retry_after = max(1, math.ceil(wait - self.max_wait_seconds))
            raise ProblemError(503, "too many password checks in progress; retry shortly",
                               type_="password-hashing-busy", headers={"Retry-After": str(retry_after)})
        self._admitted += 1
        password_hash_queue_depth(self._admitted)  # the metric counts queued + running
        try:
            result, took = await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, *args)
            self.seconds_per_hash += SMOOTHING * (took - self.seconds_per_hash)  # on the loop: no race
            return result
        finally:
            self._admitted -= 1
            password_hash_queue_depth(self._admitted)

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._check, password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)

    def close(self) -> None:
        global _active
        self._executor.shutdown(wait=False, cancel_futures=True)
        if _active is self:
            _active = None
