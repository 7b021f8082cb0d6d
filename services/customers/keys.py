"""The Ed25519 signing key and the JWKS that publishes its public half."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from customers.settings import Settings

log = logging.getLogger("customers.keys")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    public_jwk: dict[str, Any]

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> SigningKey:
        public: Ed25519PublicKey = key.public_key()
        x = _b64(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        # RFC 7638 thumbprint: the kid changes exactly when the key does.
        thumbprint = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
        kid = _b64(hashlib.sha256(thumbprint.encode()).digest())
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}
        return cls(private_key=key, kid=kid, public_jwk=jwk)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


def load_signing_key(settings: Settings) -> SigningKey:
    pem: bytes | None = None
    if settings.jwt_private_key_file is not None:
        pem = settings.jwt_private_key_file.read_bytes()
    elif settings.jwt_private_key is not None:
        pem = settings.jwt_private_key.get_secret_value().encode()
    if pem is None:
        log.warning("no MICROSHOP_JWT_PRIVATE_KEY_FILE / MICROSHOP_JWT_PRIVATE_KEY: using an ephemeral signing key; "
                    "tokens will not survive a restart and replicas will not agree")
        return SigningKey.from_private_key(Ed25519PrivateKey.generate())
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT signing key must be an Ed25519 private key (PKCS#8 PEM)")
    return SigningKey.from_private_key(key)
