"""Signing keys: Ed25519 (JWS ``EdDSA``, RFC 8037), stored in the service's database.

:class:`KeyRing` holds the published keys of one replica: the ``active`` one
signs access tokens; ``next``, ``active`` and ``retired`` ones make up the JWKS
(RFC 7517) at ``/.well-known/jwks.json``, public members only. Key ids are RFC
7638 thumbprints. Rotation (the use case :func:`healthflow.auth.signing.rotate_keys`)
promotes the already published ``next`` key, so verifiers that cached the JWKS
know it before it signs, and keeps the old key published until the last token
it signed has expired: nobody is logged out.

Each replica reloads the key set every ``settings.key_refresh_interval``
seconds (another replica may have rotated) and at once after a rotation,
and hands the app a :class:`~healthflow.common.auth.TokenVerifier` fed from it
(``app.state.verifier``), so the service verifies its own tokens without an
HTTP round trip to itself.

Private keys are PKCS#8 DER in MongoDB, envelope-encrypted
(:mod:`healthflow.common.keywrap`: ``private_key``, bound to ``auth`` and the kid),
never logged nor returned. At start a replica wraps any clear ``private_pem`` left
by an older release and re-wraps envelopes of a previous KEK (:func:`protect_keys`).

The TOTP keys of the second factor (``mfa_factors``) are kept the same way: the base32
key in an envelope bound to ``auth`` and ``mfa_factors/<user id>``
(:func:`factor_context`), opened only to check a code; :func:`protect_factors` wraps
clear ones of older releases and re-wraps those of a previous KEK at start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from pymongo.errors import DuplicateKeyError

from healthflow.auth import store
from healthflow.auth.domain import (
    ACCESS_TOKEN_TYPE,
    PUBLISHED_STATES,
    KeyInfo,
    KeyState,
    expired_keys,
)
from healthflow.auth.settings import Settings
from healthflow.common.auth import TokenVerifier
from healthflow.common.keywrap import KeyWrapper, protect_record
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.common.workers import cancel_and_wait

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an OKP public key."""
    required = {k: jwk[k] for k in ("crv", "kty", "x")}
    digest = hashlib.sha256(
        json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def key_context(kid: str) -> dict[str, str]:
    """The associated data binding a key's envelope to its record."""
    return {"service": "auth", "record": f"signing_keys/{kid}"}


async def new_key_document(state: KeyState, now: datetime, wrapper: KeyWrapper) -> Document:
    """A fresh Ed25519 key as a ``signing_keys`` document in ``state``, its private
    key wrapped by ``wrapper``."""
    private = Ed25519PrivateKey.generate()
    public_jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    kid = thumbprint(public_jwk)
    public_jwk |= {"kid": kid, "use": "sig", "alg": ALGORITHM}
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "_id": kid,
        "alg": ALGORITHM,
        "state": str(state),
        "private_key": await wrapper.wrap(der, key_context(kid)),
        "public_jwk": public_jwk,
        "created_at": now,
        "activated_at": now if state is KeyState.ACTIVE else None,
        "retired_at": None,
        "remove_after": None,
        "removed_at": None,
    }


def key_summary(doc: Document) -> dict[str, Any]:
    """The public facts of a key (no key material)."""
    return {
        "kid": doc["_id"],
        "alg": doc["alg"],
        "state": doc["state"],
        "created_at": doc["created_at"],
        "activated_at": doc.get("activated_at"),
        "retired_at": doc.get("retired_at"),
        "remove_after": doc.get("remove_after"),
        "removed_at": doc.get("removed_at"),
        "revoked_at": doc.get("revoked_at"),
    }


class KeyRing:
    """The published keys of this replica, the signing key, and the verifier fed from them."""

    def __init__(self, runtime: ServiceRuntime, settings: Settings, app_state: Any) -> None:
        self.runtime = runtime
        self.settings = settings
        self.app_state = app_state
        self.wrapper: KeyWrapper = settings.key_wrapper()
        self._published: list[Document] = []
        self._signing_kid: str | None = None
        self._signing_key: Ed25519PrivateKey | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def max_token_age(self) -> int:
        """Seconds a retired key stays published: access-token lifetime plus grace."""
        return self.settings.access_token_ttl + self.settings.key_retire_grace

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Protect the stored signing and TOTP keys (:func:`protect_keys`,
        :func:`protect_factors`), make sure an ``active`` and a ``next`` key exist, load
        them, start reloading.

        Raises:
            KeyUnwrapError: a stored key does not unwrap with the configured KEKs.
        """
        await protect_keys(self.runtime.db, self.wrapper)
        await protect_factors(self.runtime.db, self.wrapper)
        await self.ensure_keys()
        await self.reload()
        self._task = asyncio.create_task(self._reload_loop(), name="auth-key-reload")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_refresh_interval)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the keys we have; try again next time
                log.warning("could not reload signing keys: %s", type(exc).__name__)

    async def ensure_keys(self) -> None:
        """Create the first ``active`` key and a ``next`` key when missing (replica-safe)."""
        db = self.runtime.db
        now = utcnow()
        if not await store.list_keys(db, states=[KeyState.ACTIVE]):
            with contextlib.suppress(DuplicateKeyError):  # another replica won the race
                await store.insert_key(db, await new_key_document(KeyState.ACTIVE, now,
                                                                  self.wrapper), session=None)
                log.info("created the first signing key")
        if not await store.list_keys(db, states=[KeyState.NEXT]):
            await store.insert_key(db, await new_key_document(KeyState.NEXT, now, self.wrapper),
                                   session=None)

    async def reload(self) -> None:
        """Read the published keys; remove retired keys whose tokens have all expired."""
        db = self.runtime.db
        now = utcnow()
        docs = await store.list_keys(db, states=sorted(PUBLISHED_STATES))
        for kid in expired_keys([key_info(d) for d in docs], now=now):
            await store.set_key_state(db, kid, from_state=KeyState.RETIRED,
                                      to_state=KeyState.REMOVED,
                                      fields={"removed_at": now}, session=None)
        docs = [d for d in docs if not _expired(d, now)]
        active = [d for d in docs if d["state"] == KeyState.ACTIVE]
        async with self._lock:
            self._published = docs
            if active and active[0]["_id"] != self._signing_kid:
                der = await self.wrapper.unwrap(active[0]["private_key"],
                                                key_context(active[0]["_id"]))
                key = serialization.load_der_private_key(der, password=None)
                if not isinstance(key, Ed25519PrivateKey):
                    raise TypeError("the active signing key is not an Ed25519 key")
                self._signing_key, self._signing_kid = key, active[0]["_id"]
            self.app_state.verifier = TokenVerifier(
                issuer=self.settings.jwt_issuer,
                audience=self.settings.jwt_audience,
                jwks=self.jwks(),
                max_lifetime=self.settings.token_max_lifetime,
                revocations=self.runtime.revocations,
            )

    # ------------------------------------------------------------------ use

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [public JWK, ...]}``: the ``next``, ``active`` and ``retired`` keys."""
        return {"keys": [dict(d["public_jwk"]) for d in self._published]}

    @property
    def loaded(self) -> bool:
        """True once :meth:`start` has loaded the keys."""
        return self._signing_kid is not None

    @property
    def signing_kid(self) -> str:
        if self._signing_kid is None:
            raise RuntimeError("the key ring is not loaded")
        return self._signing_kid

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` with the active key (header ``kid``, ``typ: at+jwt``).

        Raises:
            RuntimeError: before :meth:`start`.
        """
        if self._signing_key is None or self._signing_kid is None:
            raise RuntimeError("the key ring is not loaded")
        return jwt.encode(claims, self._signing_key, algorithm=ALGORITHM,
                          headers={"kid": self._signing_kid, "typ": ACCESS_TOKEN_TYPE})


def key_info(doc: Document) -> KeyInfo:
    """What the rotation plan needs to know of a stored key."""
    return KeyInfo(kid=doc["_id"], state=KeyState(doc["state"]), created_at=doc["created_at"],
                   remove_after=doc.get("remove_after"))


def _expired(doc: Document, now: datetime) -> bool:
    remove_after = doc.get("remove_after")
    return doc["state"] == KeyState.RETIRED and remove_after is not None and remove_after <= now


async def protect_keys(db: Any, wrapper: KeyWrapper) -> tuple[int, int]:
    """Wrap every clear ``private_pem`` (older releases) and re-wrap every envelope of a
    previous KEK with the current one; idempotent, safe beside other replicas.
    ``(wrapped, rewrapped)`` counts.

    Raises:
        KeyUnwrapError: an envelope does not open with the configured KEKs.
    """
    wrapped = rewrapped = 0
    for doc in await store.keys_to_protect(db, wrapper.current_kek_id):
        done = await protect_record(db[store.SIGNING_KEYS], doc, wrapper,
                                    key_context(doc["_id"]), field="private_key",
                                    clear_field="private_pem", decode=_pem_to_der)
        wrapped += done == "wrapped"
        rewrapped += done == "rewrapped"
    if wrapped or rewrapped:
        log.info("protected signing keys", extra={"wrapped": wrapped, "rewrapped": rewrapped,
                                                  "kek_id": wrapper.current_kek_id})
    return wrapped, rewrapped


def _pem_to_der(pem: str) -> bytes:
    """A PEM private key (older releases kept it so) as PKCS#8 DER."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


async def check_keys(db: Any, wrapper: KeyWrapper) -> int:
    """Open every stored key's envelope (nothing written): how many opened.

    Raises:
        KeyUnwrapError: one does not open with the configured KEKs.
    """
    opened = 0
    for doc in await store.list_keys(db):
        if isinstance(doc.get("private_key"), dict):
            await wrapper.unwrap(doc["private_key"], key_context(doc["_id"]))
            opened += 1
    return opened


def factor_context(user_id: str) -> dict[str, str]:
    """The associated data binding a TOTP key's envelope to its factor record."""
    return {"service": "auth", "record": f"{store.MFA_FACTORS}/{user_id}"}


async def protect_factors(db: Any, wrapper: KeyWrapper) -> tuple[int, int]:
    """Wrap every clear TOTP key (a base32 ``secret`` of an older release) and re-wrap every
    envelope of a previous KEK with the current one; idempotent, guarded by the stored
    value (a factor re-enrolled meanwhile keeps its new key). ``(wrapped, rewrapped)``.

    Raises:
        KeyUnwrapError: an envelope does not open with the configured KEKs.
    """
    wrapped = rewrapped = 0
    for doc in await store.factors_to_protect(db, wrapper.current_kek_id):
        done = await protect_record(db[store.MFA_FACTORS], doc, wrapper,
                                    factor_context(doc["_id"]), field="secret",
                                    decode=lambda text: text.encode("ascii"))
        wrapped += done == "wrapped"
        rewrapped += done == "rewrapped"
    if wrapped or rewrapped:
        log.info("protected TOTP keys", extra={"wrapped": wrapped, "rewrapped": rewrapped,
                                               "kek_id": wrapper.current_kek_id})
    return wrapped, rewrapped


async def check_factors(db: Any, wrapper: KeyWrapper) -> int:
    """Open every stored TOTP key's envelope (nothing written): how many opened.

    Raises:
        KeyUnwrapError: one does not open with the configured KEKs.
    """
    opened = 0
    async for doc in db[store.MFA_FACTORS].find({"secret.kek_id": {"$exists": True}}):
        await wrapper.unwrap(doc["secret"], factor_context(doc["_id"]))
        opened += 1
    return opened


async def totp_secret(wrapper: KeyWrapper, factor: Document) -> str:
    """The base32 TOTP key of ``factor`` (a stored ``mfa_factors`` document); a clear one
    written by an older replica during a rolling upgrade is read as it is.

    Raises:
        KeyUnwrapError: the envelope does not open (another record's, or altered).
    """
    secret = factor["secret"]
    if isinstance(secret, str):
        return secret
    return (await wrapper.unwrap(secret, factor_context(factor["_id"]))).decode("ascii")
