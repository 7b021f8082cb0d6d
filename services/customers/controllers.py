"""HTTP routes of the customers service. Each route's docstring says who may call it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from customers.schemas import CustomerOut, Jwks, TokenPair
from customers.services import Accounts
from shopkit.app import BEARER
from shopkit.auth import Principal, requires_customer
from shopkit.contracts.customers import LoginRequest, RefreshRequest, RegisterRequest, UpdateMeRequest
from shopkit.errors import ProblemError


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @post("/register", status_code=201, summary="Register a customer account")
    async def register(self, data: JSONBody[RegisterRequest], accounts: NamedDependency[Accounts]) -> CustomerOut:
        """Public. Emails are unique case-insensitively (409); the password policy is in the schema.
        503 + Retry-After when the wait for the password-hash pool would pass its budget."""
        return CustomerOut.of(await accounts.register(str(data.email), data.password, data.name))

    @post("/login", status_code=200, summary="Log in with email and password")
    async def login(self, data: JSONBody[LoginRequest], accounts: NamedDependency[Accounts]) -> TokenPair:
        """Public. 401 for a wrong email or password (the same answer for both); 429 + Retry-After while the
        account is locked after repeated failures (per email, whatever the caller); 503 + Retry-After when
        the wait for the password-hash pool would pass its budget."""
        customer = await accounts.authenticate(str(data.email), data.password)
        return TokenPair(**await accounts.issue_tokens(customer))

    @post("/refresh", status_code=200, summary="Rotate a refresh token")
    async def refresh(self, data: JSONBody[RefreshRequest], accounts: NamedDependency[Accounts]) -> TokenPair:
        """Public (the refresh token is the credential). Reusing a rotated token revokes its whole family,
        and a password change every family of the account, including tokens a concurrent refresh mints."""
        return TokenPair(**await accounts.refresh(data.refresh_token))

    @get("/jwks", summary="Public keys that verify access tokens", cache=60, sync_to_thread=False)
    def jwks(self, accounts: NamedDependency[Accounts]) -> Jwks:
        """Public. The JSON Web Key Set every service uses to verify access tokens."""
        return Jwks(**accounts.key.jwks())


class MeController(Controller):
    path = "/customers/me"
    tags = ["customers"]
    guards = [requires_customer]
    security = BEARER

    async def _load(self, principal: Principal, accounts: Accounts) -> Any:
        customer = await accounts.get(principal.id)
        if customer is None:
            raise ProblemError(404, "this account no longer exists", type_="account-not-found")
        return customer

    @get("/", summary="The caller's profile")
    async def show(self, principal: NamedDependency[Principal], accounts: NamedDependency[Accounts]) -> CustomerOut:
        """Signed-in customers and admins: their own profile."""
        return CustomerOut.of(await self._load(principal, accounts))

    @patch("/", summary="Change the caller's name or password")
    async def update(self, data: JSONBody[UpdateMeRequest], principal: NamedDependency[Principal],
                     accounts: NamedDependency[Accounts]) -> CustomerOut:
        """Signed-in customers and admins: their own profile. A password change needs `current_password` and
        revokes every refresh token of the account."""
        customer = await self._load(principal, accounts)
        return CustomerOut.of(await accounts.update_profile(customer, data.name, data.password,
                                                            data.current_password))
