"""Password hashing with argon2id, bounded so that hashing can never take the service down.

Each argon2 hash or verify holds ``password_hash_memory_kib`` of memory while it runs (64 MiB at the
defaults). At most ``password_hash_concurrency`` run at once, in a dedicated thread pool; up to
``password_hash_queue`` more wait for a thread. Beyond that the call is refused at once with
503 + ``Retry-After`` (never a timeout), so a burst of anonymous logins or registrations costs at most
``concurrency x memory`` on top of the process's baseline: the chart's memory limit is sized from it
(``tests/charts/test_password_hash_budget.py`` keeps the two consistent).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from customers.settings import Settings
from shopkit.errors import ProblemError
from shopkit.metrics import password_hash_queue_depth

T = TypeVar("T")
RETRY_AFTER_SECONDS = 1

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
        self.capacity = settings.password_hash_concurrency + settings.password_hash_queue
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="argon2")
        self._admitted = 0
        # Verified when an email is unknown, so a login takes as long whether or not the account exists.
        self.dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        _active = self

    @property
    def waiting(self) -> int:
        return max(0, self._admitted - self.concurrency)

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self._admitted >= self.capacity:
            raise ProblemError(503, "too many password checks in progress; retry shortly",
                               type_="password-hashing-busy", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self._admitted += 1
        password_hash_queue_depth(self._admitted)  # the metric counts queued + running
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
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
