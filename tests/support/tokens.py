"""Hand-made tokens for attack tests: expired, wrongly signed, alg none, HS256 with the public key, other audience."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from customers.keys import SigningKey


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def attack_tokens(key: SigningKey, sub: str) -> dict[str, str]:
    """Tokens every service and the gateway must refuse with 401."""
    import hashlib
    import hmac

    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": key.kid}).encode())
    body = _b64(json.dumps(claims(sub)).encode())
    header_hs = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    signing_input = f"{header_hs}.{body}".encode()
    hs_sig = _b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    other = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    return {
        "expired": mint(key, claims(sub, iat=now - 3600, exp=now - 1800)),
        "wrong-key-same-kid": mint(other, claims(sub), kid=key.kid),
        "unknown-kid": mint(other, claims(sub)),
        "alg-none": f"{header_none}.{body}.",
        "hs256-with-public-key": f"{header_hs}.{body}.{hs_sig}",
        "other-audience": mint(key, claims(sub, aud="someone-else")),
        "other-issuer": mint(key, claims(sub, iss="evil")),
        "not-an-access-token": mint(key, claims(sub, typ="refresh")),
        "garbage": "not.a.jwt",
    }
