"""The customers service: accounts, login, rotating refresh tokens and the JWKS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Litestar

from customers.controllers import AuthController, MeController
from customers.keys import load_signing_key
from customers.models import Customer, RefreshFamily, RefreshToken, ensure_refresh_retention
from customers.services import Accounts
from customers.settings import Settings
from customers.throttle import LoginThrottle
from shopkit.app import Resources, Service, Uses
from shopkit.auth import TokenVerifier
from shopkit.contracts.customers import RegisterRequest
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    accounts: Accounts


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    config = Settings.of(settings)
    key = load_signing_key(config)  # at creation: a missing or bad key fails before anything listens

    async def local_jwks() -> dict[str, Any]:
        return key.jwks()

    async def build(res: Resources[Settings]) -> AsyncIterator[Deps]:
        await res.documents.configure_database([Customer, RefreshFamily, RefreshToken])
        await ensure_refresh_retention(res.retention, config.refresh_family_max_age_seconds)
        throttle = LoginThrottle(res.redis, config.namespace, threshold=config.login_failures_before_lockout,
                                 lockout_seconds=config.login_lockout_seconds,
                                 max_lockout_seconds=config.login_lockout_max_seconds,
                                 window_seconds=config.login_failure_window_seconds)
        accounts = Accounts(res.documents, config, key, throttle=throttle)
        if config.admin_email and config.admin_password:
            # The configured admin goes through the same rules as a registration, so a typo in the
            # Secret fails the start-up loudly instead of creating an account nobody can use.
            admin = RegisterRequest(email=config.admin_email, password=config.admin_password.get_secret_value(),
                                    name="Administrator")
            await accounts.ensure_admin(str(admin.email), admin.password)
        try:
            yield Deps(accounts)
        finally:
            accounts.passwords.close()

    return Service(
        Settings, config, build=build, routes=[AuthController, MeController],
        verifier=TokenVerifier(config, source=local_jwks),
        # Redis holds the per-account login throttle, which fails open: not a readiness dependency.
        uses=Uses(redis=True, ready_without=frozenset({"redis"})),
        title="microshop customers",
        description="Registration, login, token refresh, JWKS and the caller's profile.",
    ).app()
