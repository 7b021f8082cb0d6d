"""Response bodies of the customers service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from customers.models import Customer


class CustomerOut(BaseModel):
    id: str
    email: str
    name: str
    role: str

    @classmethod
    def of(cls, customer: Customer) -> CustomerOut:
        return cls(id=str(customer.id), email=customer.email, name=customer.name, role=customer.role)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class Jwks(BaseModel):
    keys: list[dict[str, str]]
