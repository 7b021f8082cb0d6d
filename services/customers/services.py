"""Customer accounts and tokens: the domain logic behind the controllers."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pymongo.errors import DuplicateKeyError

from customers.keys import SigningKey
from customers.models import Customer, RefreshFamily, RefreshToken
from customers.passwords import PasswordHashing
from customers.settings import Settings
from customers.throttle import LoginThrottle
from shopkit.errors import ProblemError
from shopkit.mongo import Documents, parse_object_id, utcnow

log = logging.getLogger("customers")


def email_key(email: str) -> str:
    return email.strip().lower()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Accounts:
    def __init__(self, engine: Documents, settings: Settings, key: SigningKey,
                 passwords: PasswordHashing | None = None, throttle: LoginThrottle | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.key = key
        self.passwords = passwords or PasswordHashing(settings)
        self.throttle = throttle or LoginThrottle(
            None, settings.namespace, threshold=settings.login_failures_before_lockout,
            lockout_seconds=settings.login_lockout_seconds, max_lockout_seconds=settings.login_lockout_max_seconds,
            window_seconds=settings.login_failure_window_seconds)

    # --- accounts -------------------------------------------------------------------------
    async def register(self, email: str, password: str, name: str, role: str = "customer") -> Customer:
        customer = Customer(  # type: ignore[call-arg]  # odmantic generates the id
            email=email.strip(), email_key=email_key(email), name=name, role=role,
            password_hash=await self.passwords.hash(password),
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
        key = email_key(email)
        await self.throttle.check(key)  # 429 while this account is locked, before any hashing
        customer = await self.engine.find_one(Customer, Customer.email_key == key)
        ok = await self.passwords.verify(customer.password_hash if customer else self.passwords.dummy_hash, password)
        if customer is None or not ok:
            if lockout := await self.throttle.failed(key):
                raise self.throttle.refusal(lockout)
            raise ProblemError(401, "invalid email or password", type_="invalid-credentials")
        await self.throttle.succeeded(key)
        if self.passwords.needs_rehash(customer.password_hash):
            customer.password_hash = await self.passwords.hash(password)
            await self.engine.save(customer)
        return customer

    async def update_profile(self, customer: Customer, name: str | None, password: str | None,
                             current_password: str | None) -> Customer:
        changes: dict[str, Any] = {}
        if password is not None:
            if current_password is None or not await self.passwords.verify(customer.password_hash, current_password):
                raise ProblemError(403, "current_password is required and must be correct to change the password",
                                   type_="current-password-required")
            changes["password_hash"] = await self.passwords.hash(password)
        if name is not None:
            changes["name"] = name.strip()
        changes["updated_at"] = utcnow()
        update: dict[str, Any] = {"$set": changes}
        if password is not None:
            # One write changes the password and kills every refresh-token family started before it
            # (their epoch no longer matches), including one a concurrent refresh is rotating right now.
            update["$inc"] = {"token_epoch": 1}
        await self.engine.get_collection(Customer).update_one({"_id": customer.id}, update)
        if password is not None:
            await self.revoke_all(str(customer.id))  # tidiness: the epoch already made them unusable
        return await self.get(str(customer.id)) or customer

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

    async def issue_tokens(self, customer: Customer) -> dict[str, Any]:
        """A new login: a new refresh-token family at the customer's current token epoch, ending after the max age."""
        now = utcnow()
        family = RefreshFamily(  # type: ignore[call-arg]  # family_id is the primary key
            family_id=uuid.uuid4().hex, customer_id=str(customer.id), epoch=customer.token_epoch,
            created_at=now, expires_at=now + self._family_max_age,
        )
        await self.engine.save(family)
        return await self._mint(customer, family, generation=0)

    @property
    def _family_max_age(self) -> timedelta:
        return timedelta(seconds=self.settings.refresh_family_max_age_seconds)

    def _family_expiry(self, family: RefreshFamily) -> datetime:
        """When the login ends; a family stored before it had ``expires_at`` ends the max age after its creation."""
        if family.expires_at is not None:
            return _aware(family.expires_at)
        return _aware(family.created_at) + self._family_max_age

    async def _mint(self, customer: Customer, family: RefreshFamily, generation: int) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(32)
        # No token outlives its family: the last ones of a login expire with it.
        expires_at = min(utcnow() + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
                         self._family_expiry(family))
        await self.engine.save(
            RefreshToken(  # type: ignore[call-arg]  # odmantic generates the id
                token_hash=_token_hash(refresh),
                family_id=family.family_id,
                customer_id=str(customer.id),
                generation=generation,
                expires_at=expires_at,
            )
        )
        return {
            "access_token": self.access_token(customer),
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.settings.access_token_ttl_seconds,
        }

    async def _family(self, stored: RefreshToken) -> RefreshFamily | None:
        family = await self.engine.find_one(RefreshFamily, RefreshFamily.family_id == stored.family_id)
        if family is not None or stored.revoked or stored.rotated_at is not None:
            return family
        # No family: either its family expired and MongoDB deleted it (TTL), so the token is dead, or the
        # token was issued before families existed (its document has no ``generation``).
        predates_families = await self.engine.get_collection(RefreshToken).find_one(
            {"_id": stored.id, "generation": {"$exists": False}}, {"_id": 1})
        if predates_families is None:
            return None
        # Its family starts at its generation (one writer wins), and ends the max age after the token's issue.
        customer = await self.get(stored.customer_id)
        legacy = RefreshFamily(  # type: ignore[call-arg]  # family_id is the primary key
            family_id=stored.family_id, customer_id=stored.customer_id, generation=stored.generation,
            epoch=customer.token_epoch if customer is not None else 0,
            created_at=stored.created_at, expires_at=_aware(stored.created_at) + self._family_max_age,
        )
        await self.engine.get_collection(RefreshFamily).update_one(
            {"_id": stored.family_id}, {"$setOnInsert": legacy.model_dump_doc()}, upsert=True
        )
        return await self.engine.find_one(RefreshFamily, RefreshFamily.family_id == stored.family_id)

    async def refresh(self, token: str) -> dict[str, Any]:
        """Rotate a refresh token.

        Alive means: the token is at its family's generation, the family is unrevoked, not past its
        ``expires_at`` (the login's absolute lifetime) and at the customer's token epoch. The rotation
        is one compare-and-set on the family, so of two concurrent uses exactly one wins, and a
        revocation (family or password change) landing at any moment leaves the token it races dead:
        validity is read from the family at each use, never from the token document alone.
        """
        invalid = ProblemError(401, "refresh token is invalid, expired or revoked", type_="invalid-refresh-token")
        stored = await self.engine.find_one(RefreshToken, RefreshToken.token_hash == _token_hash(token))
        if stored is None or stored.revoked or _aware(stored.expires_at) <= utcnow():
            raise invalid
        family = await self._family(stored)
        if family is None or family.revoked or self._family_expiry(family) <= utcnow():
            raise invalid
        if stored.generation != family.generation or stored.rotated_at is not None:
            await self._revoke_family(stored.family_id, reason="reuse of a rotated refresh token")
            raise invalid
        customer = await self.get(stored.customer_id)
        if customer is None or customer.token_epoch != family.epoch:
            raise invalid
        # The compare-and-set: of two concurrent uses of one token, exactly one moves the generation.
        result = await self.engine.get_collection(RefreshFamily).update_one(
            {"_id": family.family_id, "generation": stored.generation, "revoked": False, "epoch": family.epoch},
            {"$inc": {"generation": 1}},
        )
        if result.modified_count != 1:
            await self._revoke_family(stored.family_id, reason="concurrent reuse of a refresh token")
            raise invalid
        await self.engine.get_collection(RefreshToken).update_one(
            {"_id": stored.id}, {"$set": {"rotated_at": utcnow()}}
        )
        return await self._mint(customer, family, generation=stored.generation + 1)

    async def _revoke_family(self, family_id: str, reason: str) -> None:
        await self.engine.get_collection(RefreshFamily).update_one({"_id": family_id}, {"$set": {"revoked": True}})
        await self.engine.get_collection(RefreshToken).update_many(
            {"family_id": family_id}, {"$set": {"revoked": True}}
        )
        log.warning("revoked refresh token family %s: %s", family_id, reason)

    async def revoke_all(self, customer_id: str) -> None:
        await self.engine.get_collection(RefreshFamily).update_many(
            {"customer_id": customer_id}, {"$set": {"revoked": True}}
        )
        await self.engine.get_collection(RefreshToken).update_many(
            {"customer_id": customer_id}, {"$set": {"revoked": True}}
        )
