from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from shopkit import registry
from shopkit.settings import ServiceSettings

DEFAULT_FAMILY_MAX_AGE_SECONDS = 30 * 86400


class Settings(ServiceSettings):
    service_name: str = "customers"
    port: int = Field(default=registry.get("customers").port, ge=1, le=65535)

    # Ed25519 signing key (PKCS#8 PEM): a file (mounted from a Secret in the cluster) or the PEM itself.
    # Neither set: an ephemeral key is generated (tokens die with the process; fine for a quick try only).
    jwt_private_key_file: Path | None = None
    jwt_private_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl_seconds: int = Field(default=14 * 86400, ge=300, le=90 * 86400)
    # The absolute lifetime of a login (a refresh-token family): however often its tokens are rotated, none
    # is accepted, or expires, later than this after the login. At least one token lifetime; unset, it is
    # 30 days or the refresh-token lifetime if that is longer (so a longer token TTL alone never fails).
    refresh_family_max_age_seconds: int = Field(default=DEFAULT_FAMILY_MAX_AGE_SECONDS, ge=300, le=365 * 86400)

    # Password hashing (argon2id). Each running hash holds memory_kib of memory: the chart's memory limit
    # must cover concurrency x memory_kib on top of the baseline (a chart test checks it). The others wait
    # for a thread while their expected wait is within max_wait_seconds (keep it below the gateway's
    # upstream timeout, 10 s, minus a hash); beyond it logins and registrations get 503 + Retry-After at once.
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65536, ge=8, le=1048576)
    password_hash_parallelism: int = Field(default=4, ge=1, le=16)
    password_hash_concurrency: int = Field(default=2, ge=1, le=64)
    password_hash_max_wait_seconds: float = Field(default=8.0, gt=0, le=300)

    # Per-account throttling of failed logins (Redis; customers.throttle): from the Nth consecutive failure
    # for one email the account is locked for lockout_seconds, doubling per further failure up to the max.
    login_failures_before_lockout: int = Field(default=5, ge=1, le=1000)
    login_lockout_seconds: int = Field(default=30, ge=1, le=86400)
    login_lockout_max_seconds: int = Field(default=900, ge=1, le=86400)
    login_failure_window_seconds: int = Field(default=3600, ge=60, le=30 * 86400)

    # The first admin (a Secret in the cluster; `make dev` passes documented dev-only values).
    admin_email: str | None = None
    admin_password: SecretStr | None = None

    @model_validator(mode="after")
    def _a_login_outlives_one_refresh_token(self) -> Settings:
        if "refresh_family_max_age_seconds" not in self.model_fields_set:
            # frozen model: the default follows a longer token lifetime
            object.__setattr__(self, "refresh_family_max_age_seconds",
                               max(DEFAULT_FAMILY_MAX_AGE_SECONDS, self.refresh_token_ttl_seconds))
        if self.refresh_family_max_age_seconds < self.refresh_token_ttl_seconds:
            raise ValueError(
                f"MICROSHOP_REFRESH_FAMILY_MAX_AGE_SECONDS ({self.refresh_family_max_age_seconds}) must be at least "
                f"MICROSHOP_REFRESH_TOKEN_TTL_SECONDS ({self.refresh_token_ttl_seconds}): a login's maximum age "
                "cannot be shorter than the lifetime of one of its refresh tokens")
        return self
