"""Gateway settings (``MICROSHOP_*``); the chart and the dev runner use the same names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, create_model

from shopkit import registry
from shopkit.settings import ServiceSettings

# Where each upstream (shopkit.registry.upstreams) answers: ``<name>_url`` (MICROSHOP_<NAME>_URL), its root;
# the gateway appends the path without ``/api``. Default: its registry port on this host.
if TYPE_CHECKING:
    class _Upstreams(ServiceSettings):
        alerts_url: str = ""  # the one the gateway names itself (/api/ws)
else:
    _Upstreams = create_model(
        "_Upstreams", __base__=ServiceSettings,
        **{f"{s.name}_url": (str, f"http://127.0.0.1:{s.port}") for s in registry.upstreams()})


class Settings(_Upstreams):
    service_name: str = "gateway"
    port: int = Field(default=registry.get("gateway").port, ge=1, le=65535)

    # A shop may run without analytics: its routes then answer 404 and /api/health leaves it out.
    analytics_enabled: bool = True

    # Per caller (user id when signed in, else client IP): a bucket of N requests refilled over the window.
    rate_limit_requests: int = Field(default=100, ge=1)
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    # Only behind a proxy that sets X-Forwarded-For (an ingress): then the client IP is its last entry.
    trust_forwarded_for: bool = False
    # Request bodies above this size are refused with 413 before anything is forwarded.
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # /api/ws: a frame the client does not take within this time closes its socket (1013); others are unaffected.
    ws_send_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    def service_urls(self) -> dict[str, str]:
        """The enabled services and their base URLs (no trailing slash)."""
        urls = {service.name: getattr(self, f"{service.name}_url") for service in registry.upstreams()}
        if not self.analytics_enabled:
            del urls["analytics"]
        return {name: url.rstrip("/") for name, url in urls.items()}
