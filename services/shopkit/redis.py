"""Redis client (asyncio) from ``MICROSHOP_REDIS_URL``."""

from __future__ import annotations

from redis.asyncio import Redis

from shopkit.settings import ServiceSettings


def create_redis(settings: ServiceSettings) -> Redis:
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )
