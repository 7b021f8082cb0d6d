"""Tokens made by hand: valid ones as the customers service mints them, and the attacks every service refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from customers.keys import SigningKey
from devtools.shop import LocalShop


def signing_key(key_file: Path) -> SigningKey:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return SigningKey.from_private_key(key)


def claims(sub: str, role: str = "customer", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "microshop", "aud": "microshop-api", "sub": sub, "role": role, "email": "x@example.com",
        "typ": "access", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return base


def mint(key: SigningKey, payload: dict[str, Any], *, kid: str | None = None) -> str:
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": kid or key.kid})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def unsigned(payload: dict[str, Any], kid: str) -> str:
    """``alg: none``: no signature at all."""
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."


def hs256_with_public_key(key: Ed25519PrivateKey, payload: dict[str, Any], kid: str) -> str:
    """The classic algorithm-confusion attack: HMAC keyed with the (public) verification key."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(public_pem(key), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def attack_tokens(key: SigningKey, sub: str) -> dict[str, str]:
    """Tokens every service and the gateway must refuse with 401."""
    now = int(time.time())
    other = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    return {
        "expired": mint(key, claims(sub, iat=now - 3600, exp=now - 1800)),
        "wrong-key-same-kid": mint(other, claims(sub), kid=key.kid),
        "unknown-kid": mint(other, claims(sub)),
        "alg-none": unsigned(claims(sub), key.kid),
        "hs256-with-public-key": hs256_with_public_key(key.private_key, claims(sub), key.kid),
        "other-audience": mint(key, claims(sub, aud="someone-else")),
        "other-issuer": mint(key, claims(sub, iss="evil")),
        "not-an-access-token": mint(key, claims(sub, typ="refresh")),
        "garbage": "not.a.jwt",
    }


@dataclass(frozen=True)
class TokenMint:
    """Mints access tokens for a running shop like its customers service does (or deliberately not)."""

    key: Ed25519PrivateKey
    kid: str

    @classmethod
    def from_shop(cls, shop: LocalShop, key_file: Path) -> TokenMint:
        jwks = httpx.get(f"{shop.url('customers')}/auth/jwks", timeout=5).json()
        return cls(key=signing_key(key_file).private_key, kid=jwks["keys"][0]["kid"])

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "microshop", "aud": "microshop-api", "sub": "gateway-test-user", "role": "customer",
            "email": "gw@example.com", "typ": "access", "iat": now, "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: Ed25519PrivateKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        return jwt.encode(self.claims(**overrides), key or self.key, algorithm="EdDSA",
                          headers={"kid": kid or self.kid})

    def unsigned(self) -> str:
        return unsigned(self.claims(), self.kid)

    def hs256_with_public_key(self) -> str:
        return hs256_with_public_key(self.key, self.claims(), self.kid)
