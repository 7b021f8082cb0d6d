from __future__ import annotations

from pydantic import Field

from shopkit import registry
from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "alerts"
    port: int = Field(default=registry.get("alerts").port, ge=1, le=65535)

    # WebSocket push (/alerts/ws).
    # A heartbeat message goes to every idle socket this often (keeps proxies' idle timeouts from closing it).
    ws_heartbeat_seconds: float = Field(default=20.0, gt=0, le=3600)
    # Messages waiting for one slow client; when full the client is closed with 1013 (it reconnects and re-reads
    # GET /alerts), so it never delays anyone else.
    ws_queue_size: int = Field(default=256, ge=1, le=100_000)
    # A single send that takes longer than this closes the socket with 1013 too (a stuck client).
    ws_send_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Per user (across replicas, in Redis): at most this many sockets open at once; one more is closed with 4429.
    ws_max_sockets_per_user: int = Field(default=5, ge=1, le=1000)
    # Per user: connection attempts allowed per window; beyond them sockets are closed with 4429 until it ends.
    ws_connect_attempts: int = Field(default=20, ge=1, le=100_000)
    ws_connect_window_seconds: int = Field(default=60, ge=1, le=3600)

    # Read alerts are deleted once they are older than this (checked every ``alert_purge_seconds``); unread ones
    # are kept. A stock alert counts as read once any admin marked it. 0 keeps them forever.
    alert_read_retention_seconds: float = Field(default=30 * 86400, ge=0, le=3650 * 86400)
    alert_purge_seconds: float = Field(default=3600.0, gt=0, le=86400)
