"""The VAPID key pair (RFC 8292) Web Push is signed with.

The configured key (``NOTIFICATION_VAPID_PRIVATE_KEY``), else the one stored in
``service_keys`` (generated once, first writer wins, so every replica signs with
the same key). The stored private key is an envelope
(:mod:`healthflow.common.keywrap`, bound to ``notification`` and the record); a
clear base64url DER left by an older release is wrapped at start, an envelope of a
previous KEK re-wrapped (:func:`~healthflow.common.keywrap.kept_key`).
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.keywrap import KeyWrapper, kept_key
from healthflow.common.mongo import Document
from healthflow.notification import store
from healthflow.notification.settings import Settings

RECORD = "vapid"
CONTEXT = {"service": "notification", "record": f"{store.SERVICE_KEYS}/{RECORD}"}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_pair(private_der: bytes) -> tuple[str, str]:
    """(private key as base64url PKCS#8 DER, public key as base64url X9.62 point).

    Raises:
        ValueError: not a P-256 private key.
    """
    key = serialization.load_der_private_key(private_der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("the VAPID key must be a P-256 key")
    public = key.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return b64url(private_der), b64url(public)


async def vapid_keys(db: AsyncDatabase[Document], settings: Settings,
                     wrapper: KeyWrapper) -> tuple[str, str]:
    """(private key as base64url PKCS#8 DER, public key as base64url X9.62 point).

    Raises:
        KeyUnwrapError: the stored key does not open with the configured KEKs.
        ValueError: the configured key is not a P-256 key.
    """
    if settings.vapid_private_key is not None:
        return vapid_pair(_b64decode(settings.vapid_private_key.get_secret_value()))
    return vapid_pair(await kept_key(db[store.SERVICE_KEYS], RECORD, wrapper, CONTEXT,
                                     generate=_new_der, clear_field="private_key"))


def _new_der() -> bytes:
    """A new P-256 private key as PKCS#8 DER."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
