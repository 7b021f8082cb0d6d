"""Stored documents of the customers database."""

from __future__ import annotations

from datetime import datetime

from shopkit.mongo import Field, Index, Model, Retention, utcnow

REFRESH_FAMILIES_TTL_INDEX = "refresh_families_ttl"
REFRESH_TOKENS_TTL_INDEX = "refresh_tokens_ttl"


class Customer(Model):
    email: str
    email_key: str = Field(unique=True)  # lower-cased: emails are unique case-insensitively
    name: str
    role: str = "customer"
    password_hash: str
    # Bumped by a password change: refresh-token families started under an older epoch are dead.
    token_epoch: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {"collection": "customers"}


class RefreshFamily(Model):
    """The tokens of one login. The family, not the token, decides whether a refresh token is alive.

    A token is alive only while its ``generation`` equals the family's, the family is not revoked and
    the family's ``epoch`` equals the customer's ``token_epoch``. Rotating is one compare-and-set on
    this document (``generation`` + 1, only if unrevoked and still at the token's generation), and
    revoking is one write to it (or to the customer's epoch), so a token minted by a refresh that
    raced a revocation is dead on arrival, whatever order the writes landed in.

    ``expires_at`` is the login's absolute end (``created_at`` + ``refresh_family_max_age_seconds``):
    no refresh is accepted after it and no token of the family expires later. It is deleted
    then (``ensure_refresh_retention``). ``None`` only in a family stored before it existed (read as ``created_at``
    + the max age; ``ensure_refresh_retention`` fills it in at start-up).
    """

    family_id: str = Field(primary_field=True)
    customer_id: str = Field(index=True)
    epoch: int = 0
    generation: int = 0
    revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None

    model_config = {"collection": "refresh_families"}


class RefreshToken(Model):
    """A refresh token, stored by its SHA-256 only. Tokens of one login form a family (``RefreshFamily``).

    Presenting a token that was already rotated means it leaked: the whole family is revoked. A rotated
    or revoked token is kept until its ``expires_at`` for that detection only; it is then deleted
    (``ensure_refresh_retention``).
    """

    token_hash: str = Field(unique=True)
    family_id: str = Field(index=True)
    customer_id: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    generation: int = 0  # the family's generation this token was issued at
    rotated_at: datetime | None = None
    revoked: bool = False

    model_config = {
        "collection": "refresh_tokens",
        "indexes": lambda: [Index(RefreshToken.customer_id)],
    }


async def ensure_refresh_retention(retention: Retention, family_max_age_seconds: float) -> None:
    """Refresh tokens and families are deleted once past their ``expires_at`` (a TTL index, or the sweep:
    ``MICROSHOP_MONGO_EXPIRY``).

    A family stored before families had an ``expires_at`` gets ``created_at`` + the max age (one
    statement; afterwards it finds nothing to do), so the expiry covers it too.
    """
    db = retention.db
    await retention.expire(RefreshToken.__collection__, "expires_at", 0, REFRESH_TOKENS_TTL_INDEX)
    await retention.expire(RefreshFamily.__collection__, "expires_at", 0, REFRESH_FAMILIES_TTL_INDEX)
    max_age_ms = int(family_max_age_seconds * 1000)
    await db[RefreshFamily.__collection__].update_many(
        {"expires_at": None}, [{"$set": {"expires_at": {"$add": ["$created_at", max_age_ms]}}}]
    )
