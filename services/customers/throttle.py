"""Per-account throttling of failed logins, in Redis, whatever the caller's IP or token.

Failures count per normalised email (stored hashed; existing and unknown accounts alike). From the
``threshold``-th consecutive failure the account is locked for ``lockout_seconds``, doubling up to
``max_lockout_seconds``; a locked account answers 429 with ``Retry-After`` before any password is
checked. One Lua call per failure keeps count and lock consistent across replicas. Without Redis the
throttle fails open (logged): an outage of the counter must not lock everyone out.
"""

from __future__ import annotations

import hashlib
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shopkit.errors import ProblemError

log = logging.getLogger("customers.throttle")

# KEYS[1] failure count, KEYS[2] lock; ARGV threshold, base lockout (s), max lockout (s), window (s).
# Returns the lockout just started, in seconds (0: none).
RECORD_FAILURE_LUA = """
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local threshold = tonumber(ARGV[1])
if failures < threshold then return 0 end
local lockout = math.min(tonumber(ARGV[2]) * 2 ^ (failures - threshold), tonumber(ARGV[3]))
lockout = math.floor(lockout)
redis.call('SET', KEYS[2], '1', 'EX', lockout)
return lockout
"""

WARN_EVERY_SECONDS = 10.0


class LoginThrottle:
    def __init__(self, redis: Redis | None, namespace: str, *, threshold: int, lockout_seconds: int,
                 max_lockout_seconds: int, window_seconds: int) -> None:
        self.redis = redis
        self.prefix = f"{namespace}customers:login:"
        self.threshold = threshold
        self.lockout_seconds = lockout_seconds
        self.max_lockout_seconds = max(max_lockout_seconds, lockout_seconds)
        self.window_seconds = window_seconds
        self._script = redis.register_script(RECORD_FAILURE_LUA) if redis is not None else None
        self._warned_at = float("-inf")

    def _keys(self, email_key: str) -> tuple[str, str]:
        digest = hashlib.sha256(email_key.encode()).hexdigest()
        return f"{self.prefix}failures:{digest}", f"{self.prefix}lock:{digest}"

    def _fail_open(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("login throttle unavailable, logins are not throttled per account (fail open): %s", exc)

    @staticmethod
    def refusal(retry_after: int) -> ProblemError:
        return ProblemError(429, "too many failed logins for this account; try again later",
                            type_="login-throttled", headers={"Retry-After": str(max(1, retry_after))})

    async def check(self, email_key: str) -> None:
        """Raise 429 while the account is locked."""
        if self.redis is None:
            return
        _, lock = self._keys(email_key)
        try:
            ttl = int(await self.redis.ttl(lock))
        except RedisError as exc:
            self._fail_open(exc)
            return
        if ttl > 0:
            raise self.refusal(ttl)

    async def failed(self, email_key: str) -> int:
        """Count a failed login; the lockout it started (seconds, 0 for none)."""
        if self._script is None:
            return 0
        try:
            lockout = int(await self._script(keys=list(self._keys(email_key)), args=[
                self.threshold, self.lockout_seconds, self.max_lockout_seconds, self.window_seconds]))
        except RedisError as exc:
            self._fail_open(exc)
            return 0
        if lockout:
            log.warning("login locked for %d s after repeated failures (account key %s)", lockout,
                        self._keys(email_key)[0].rsplit(":", 1)[-1][:12])
        return lockout

    async def succeeded(self, email_key: str) -> None:
        if self.redis is None:
            return
        try:
            await self.redis.delete(self._keys(email_key)[0])
        except RedisError as exc:
            self._fail_open(exc)
