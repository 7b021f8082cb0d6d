"""Customer accounts and tokens: the domain logic behind the controllers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from odmantic import AIOEngine
from odmantic.exceptions import DuplicateKeyError

from customers.keys import SigningKey
from customers.models import Customer, RefreshToken
from customers.settings import Settings
from shopkit.errors import ProblemError
from shopkit.metrics import password_hash_queue_depth
from shopkit.mongo import parse_object_id, utcnow

log = logging.getLogger("customers")
T = TypeVar("T")
_hasher = PasswordHasher()
# Verified when the email is unknown, so a login takes as long whether or not the account exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def email_key(email: str) -> str:
    return email.strip().lower()


_hashing = 0  # argon2 hashes and verifications queued or running (microshop_password_hash_queue_depth)


async def _argon2(work: Callable[[], T]) -> T:
    """Run an argon2 computation in a thread, counted in the hash queue depth."""
    global _hashing
    _hashing += 1
    password_hash_queue_depth(_hashing)
    try:
        return await asyncio.to_thread(work)
    finally:
        _hashing -= 1
        password_hash_queue_depth(_hashing)


async def hash_password(password: str) -> str:
    return await _argon2(lambda: _hasher.hash(password))


async def verify_password(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await _argon2(check)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Accounts:
    def __init__(self, engine: AIOEngine, settings: Settings, key: SigningKey) -> None:
        self.engine = engine
        self.settings = settings
        self.key = key

    # --- accounts -------------------------------------------------------------------------
    async def register(self, email: str, password: str, name: str, role: str = "customer") -> Customer:
        customer = Customer(  # type: ignore[call-arg]  # odmantic generates the id
            email=email.strip(), email_key=email_key(email), name=name, role=role,
            password_hash=await hash_password(password),
        )
        try:
            await self.engine.save(customer)
        except DuplicateKeyError:
            raise ProblemError(409, "an account with this email already exists", type_="email-taken") from None
        log.info("customer %s registered (role %s)", customer.id, role)
        return customer

    async def get(self, customer_id: str) -> Customer | None:
        oid = parse_object_id(customer_id)
        return None if oid is None else await self.engine.find_one(Customer, Customer.id == oid)

    async def authenticate(self, email: str, password: str) -> Customer:
        customer = await self.engine.find_one(Customer, Customer.email_key == email_key(email))
        ok = await verify_password(customer.password_hash if customer else _DUMMY_HASH, password)
        if customer is None or not ok:
            raise ProblemError(401, "invalid email or password", type_="invalid-credentials")
        if _hasher.check_needs_rehash(customer.password_hash):
            customer.password_hash = await hash_password(password)
            await self.engine.save(customer)
        return customer

    async def update_profile(self, customer: Customer, name: str | None, password: str | None,
                             current_password: str | None) -> Customer:
        if password is not None:
            if current_password is None or not await verify_password(customer.password_hash, current_password):
                raise ProblemError(403, "current_password is required and must be correct to change the password",
                                   type_="current-password-required")
            customer.password_hash = await hash_password(password)
        if name is not None:
            customer.name = name.strip()
        customer.updated_at = utcnow()
        await self.engine.save(customer)
        if password is not None:
            await self.revoke_all(str(customer.id))
        return customer

    async def ensure_admin(self, email: str, password: str) -> None:
        """Create the configured first admin if no account has that email (idempotent, replica-safe)."""
        existing = await self.engine.find_one(Customer, Customer.email_key == email_key(email))
        if existing is not None:
            if existing.role != "admin":
                log.warning("configured admin email belongs to a non-admin account; not promoting it")
            return
        try:
            await self.register(email, password, "Administrator", role="admin")
            log.info("created the configured admin account")
        except ProblemError:
            pass  # another replica created it first

    # --- tokens ---------------------------------------------------------------------------
    def access_token(self, customer: Customer) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": str(customer.id),
            "role": customer.role,
            "email": customer.email,
            "typ": "access",
            "iat": now,
            "exp": now + self.settings.access_token_ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key.private_key, algorithm="EdDSA", headers={"kid": self.key.kid})

    async def issue_tokens(self, customer: Customer, family_id: str | None = None) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(32)
        await self.engine.save(
            RefreshToken(  # type: ignore[call-arg]  # odmantic generates the id
                token_hash=_token_hash(refresh),
                family_id=family_id or uuid.uuid4().hex,
                customer_id=str(customer.id),
                expires_at=utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        return {
            "access_token": self.access_token(customer),
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.settings.access_token_ttl_seconds,
        }

    async def refresh(self, token: str) -> dict[str, Any]:
        invalid = ProblemError(401, "refresh token is invalid, expired or revoked", type_="invalid-refresh-token")
        stored = await self.engine.find_one(RefreshToken, RefreshToken.token_hash == _token_hash(token))
        if stored is None or stored.revoked or _aware(stored.expires_at) <= utcnow():
            raise invalid
        if stored.rotated_at is not None:
            await self._revoke_family(stored.family_id, reason="reuse of a rotated refresh token")
            raise invalid
        # Guarded rotation: of two concurrent uses of one token, exactly one wins; the other is reuse.
        result = await self.engine.get_collection(RefreshToken).update_one(
            {"_id": stored.id, "rotated_at": None, "revoked": False}, {"$set": {"rotated_at": utcnow()}}
        )
        if result.modified_count != 1:
            await self._revoke_family(stored.family_id, reason="concurrent reuse of a refresh token")
            raise invalid
        customer = await self.get(stored.customer_id)
        if customer is None:
            raise invalid
        return await self.issue_tokens(customer, family_id=stored.family_id)

    async def _revoke_family(self, family_id: str, reason: str) -> None:
        await self.engine.get_collection(RefreshToken).update_many(
            {"family_id": family_id}, {"$set": {"revoked": True}}
        )
        log.warning("revoked refresh token family %s: %s", family_id, reason)

    async def revoke_all(self, customer_id: str) -> None:
        await self.engine.get_collection(RefreshToken).update_many(
            {"customer_id": customer_id}, {"$set": {"revoked": True}}
        )
