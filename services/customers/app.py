"""The customers service: accounts, login, rotating refresh tokens and the JWKS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Litestar

from customers.controllers import AuthController, MeController
from customers.keys import load_signing_key
from customers.models import Customer, RefreshToken
from customers.services import Accounts
from customers.settings import Settings
from shopkit.app import Resources, Service
from shopkit.auth import TokenVerifier
from shopkit.contracts.customers import RegisterRequest
from shopkit.settings import ServiceSettings


@dataclass
class Deps:
    accounts: Accounts


def create_app(settings: ServiceSettings | None = None) -> Litestar:
    settings = settings if isinstance(settings, Settings) else Settings()
    key = load_signing_key(settings)

    async def local_jwks() -> dict[str, Any]:
        return key.jwks()

    @contextlib.asynccontextmanager
    async def build(res: Resources) -> AsyncIterator[Deps]:
        await res.odm.configure_database([Customer, RefreshToken])  # type: ignore[arg-type]
        accounts = Accounts(res.odm, settings, key)
        if settings.admin_email and settings.admin_password:
            # The configured admin goes through the same rules as a registration, so a typo in the
            # Secret fails the start-up loudly instead of creating an account nobody can use.
            admin = RegisterRequest(email=settings.admin_email, password=settings.admin_password.get_secret_value(),
                                    name="Administrator")
            await accounts.ensure_admin(str(admin.email), admin.password)
        yield Deps(accounts)

    return Service(
        settings,
        title="microshop customers",
        description="Registration, login, token refresh, JWKS and the caller's profile.",
        routes=[AuthController, MeController],
        deps=Deps,
        build=build,
        verifier=TokenVerifier(settings, source=local_jwks),
    ).app()
