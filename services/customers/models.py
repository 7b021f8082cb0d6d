"""Stored documents of the customers database."""

from __future__ import annotations

from datetime import datetime

from odmantic import Field, Index, Model

from shopkit.mongo import utcnow


class Customer(Model):
    email: str
    email_key: str = Field(unique=True)  # lower-cased: emails are unique case-insensitively
    name: str
    role: str = "customer"
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    model_config = {"collection": "customers"}


class RefreshToken(Model):
    """A refresh token, stored by its SHA-256 only. Tokens of one login form a family.

    Presenting a token that was already rotated means it leaked: the whole family is revoked.
    """

    token_hash: str = Field(unique=True)
    family_id: str = Field(index=True)
    customer_id: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    rotated_at: datetime | None = None
    revoked: bool = False

    model_config = {
        "collection": "refresh_tokens",
        "indexes": lambda: [Index(RefreshToken.customer_id)],
    }
