"""Limits on the live feed's sockets, per user and across replicas (Redis).

At most ``ws_max_sockets_per_user`` open sockets per user (each holds a renewed lease, so a dead
replica's sockets free themselves within ``LEASE_SECONDS``) and ``ws_connect_attempts`` attempts per
``ws_connect_window_seconds``. Both refusals close with 4429; without Redis the limits fail open.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("alerts.sockets")

LEASE_SECONDS = 60
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3

# KEYS[1] the user's open sockets (zset member → lease expiry, ms), KEYS[2] the attempts counter.
# ARGV cap, lease (ms), attempts allowed, window (s), member.
# Returns {1, 0} admitted; {-1, retry_after_s} too many attempts; {-2, 0} too many open sockets.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local attempts = redis.call('INCR', KEYS[2])
if attempts == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
if attempts > tonumber(ARGV[3]) then
  local ttl = redis.call('TTL', KEYS[2])
  if ttl < 1 then ttl = 1 end
  return {-1, ttl}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return {-2, 0} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[5])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {1, 0}
"""

RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


@dataclass(frozen=True)
class Admission:
    member: str | None  # the lease to renew and release (None: admitted without one, Redis unavailable)
    refused: str | None = None  # why not admitted
    retry_after: int = 0


class SocketLimits:
    def __init__(self, redis: Redis, namespace: str, *, max_per_user: int, attempts: int,
                 window_seconds: int) -> None:
        self.redis = redis
        self.prefix = f"{namespace}alerts:ws:"
        self.max_per_user = max_per_user
        self.attempts = attempts
        self.window_seconds = window_seconds
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._renew = redis.register_script(RENEW_LUA)

    def _open_key(self, user_id: str) -> str:
        return f"{self.prefix}open:{user_id}"

    async def acquire(self, user_id: str) -> Admission:
        member = uuid.uuid4().hex
        try:
            code, retry = (int(v) for v in await self._acquire(
                keys=[self._open_key(user_id), f"{self.prefix}attempts:{user_id}"],
                args=[self.max_per_user, LEASE_SECONDS * 1000, self.attempts, self.window_seconds, member]))
        except RedisError as exc:
            log.warning("socket limits unavailable, admitting without them (fail open): %s", exc)
            return Admission(None)
        if code == -1:
            return Admission(None, f"too many connection attempts; retry in {retry} s", retry)
        if code == -2:
            return Admission(None, f"at most {self.max_per_user} live sockets per user; close one first")
        return Admission(member)

    async def renew(self, user_id: str, member: str) -> None:
        try:
            await self._renew(keys=[self._open_key(user_id)], args=[LEASE_SECONDS * 1000, member])
        except RedisError as exc:
            log.warning("could not renew a socket lease: %s", exc)

    async def release(self, user_id: str, member: str) -> None:
        try:
            await self.redis.zrem(self._open_key(user_id), member)
        except RedisError as exc:
            log.warning("could not release a socket lease (it expires in %d s): %s", LEASE_SECONDS, exc)
