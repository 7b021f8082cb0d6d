from __future__ import annotations

from pydantic import Field

from shopkit import registry
from shopkit.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "products"
    port: int = Field(default=registry.get("products").port, ge=1, le=65535)

    # Seed a small demo catalog at startup when the catalog is empty (`make dev` sets it).
    seed_demo: bool = False
    # Lifetime of a cached product read; writes invalidate at once, this only bounds memory.
    cache_ttl_seconds: int = Field(default=300, ge=1, le=86400)
