"""The prescription service's Ed25519 signing key (RFC 8032) and its public JWK (RFC 8037).

Machinery only: which key signs, and how a signature is made and checked; what
is signed is :func:`healthflow.prescription.domain.signed_message`.

The key is the 32-byte seed in ``PRESCRIPTION_SIGNING_KEY`` (base64url, no
padding) when set — production takes it from a secret — else one generated on
first use and kept in the service's database (collection ``signing_keys``,
``_id`` ``current``), so that every replica and every restart signs with the same
key (``printed.signing_key``). Its ``kid`` is the first 16 hex digits of SHA-256 of
the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair with its ``kid``."""

    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def kid(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()[:16]

    def jwk(self) -> dict[str, Any]:
        """The public key as an RFC 8037 OKP JWK."""
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.public_raw), "kid": self.kid,
                "use": "sig", "alg": "EdDSA"}

    def sign(self, message: bytes) -> str:
        """The Ed25519 signature of ``message``, base64url without padding (86 characters)."""
        return b64url(self.private.sign(message))


def from_seed(seed: bytes) -> SigningKey:
    """Raises ValueError unless ``seed`` is 32 bytes."""
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


def new_seed() -> bytes:
    """32 random bytes from the operating system's CSPRNG (an Ed25519 private key)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())


def verify(jwk: dict[str, Any], message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64url) is ``jwk``'s Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(unb64url(jwk["x"])).verify(unb64url(signature),
                                                                      message)
    except (InvalidSignature, ValueError):
        return False
    return True
