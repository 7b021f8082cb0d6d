"""Gateway settings (``MICROSHOP_*``); the chart and the dev runner use the same names."""

from __future__ import annotations

from pydantic import Field

from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "gateway"
    port: int = Field(default=8000, ge=1, le=65535)

    # Where each service answers (its root; the gateway appends the path without ``/api``).
    customers_url: str = "http://127.0.0.1:8001"
    products_url: str = "http://127.0.0.1:8002"
    orders_url: str = "http://127.0.0.1:8003"
    alerts_url: str = "http://127.0.0.1:8004"
    analytics_url: str = "http://127.0.0.1:8005"
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
        urls = {
            "customers": self.customers_url,
            "products": self.products_url,
            "orders": self.orders_url,
            "alerts": self.alerts_url,
            "analytics": self.analytics_url,
        }
        if not self.analytics_enabled:
            del urls["analytics"]
        return {name: url.rstrip("/") for name, url in urls.items()}
