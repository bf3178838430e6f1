"""Envelope encryption of the private keys a service keeps in its database.

A stored private key or secret (auth's JWT signing keys and users' TOTP keys,
notification's VAPID key, audit's generated checkpoint key, prescription's generated
signing key) is never written in clear. :meth:`KeyWrapper.wrap` encrypts it with a
fresh per-record *data key*
(AES-256-GCM, NIST SP 800-38D, random 96-bit nonce) and wraps that data key with a
*key-encryption key* (KEK). The envelope is a dict stored as is::

    {"v": 1, "alg": "A256GCM", "nonce": bytes(12), "ciphertext": bytes,
     "kek_id": "kek-2026-11", "kek_alg": "A256KW", "wrapped_key": bytes(40)}

``context`` (e.g. ``{"service": "auth", "record": "signing_keys/<kid>"}``) is the
GCM associated data: an envelope copied onto another record does not decrypt.

:class:`LocalKeyWrapper` holds the KEKs itself (AES key wrap, RFC 3394, via
``cryptography``). A KMS implements the same protocol: Vault transit's
``encrypt``/``decrypt`` or AWS KMS ``GenerateDataKey``/``Decrypt`` in place of the
local key wrap (``kek_alg`` names it, ``kek_id`` the KMS key version), with the
context as KMS encryption context. Methods are async for that reason.

Rotation: configure the new KEK first and keep the old one as *previous*;
:meth:`KeyWrapper.rewrap` re-wraps only the data key (the ciphertext is untouched);
services re-wrap every stale envelope at start (:func:`stale`), after which the
previous KEK may be dropped.

KEKs come from ``KEY_ENCRYPTION_KEYS`` (or ``<PREFIX>_KEY_ENCRYPTION_KEYS``) or the
file ``KEY_ENCRYPTION_KEYS_FILE`` names (a mounted secret): entries ``id:key``
separated by commas or new lines, the key 32 bytes base64url; the first is the
current KEK, the rest previous ones. A bare key gets the id ``kek-`` + the first 12
hex digits of its SHA-256. Production refuses to start without one
(:meth:`KeyEncryptionSettings.own_production_problems`); in development a built-in,
publicly known KEK (:data:`DEVELOPMENT_KEK_ID`) stands in and stays readable, so a
configured KEK re-wraps what it protected.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from pydantic import SecretStr

from healthflow.common.settings import ConfigurationError, ServiceSettings, env_name

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

log = logging.getLogger(__name__)

ENVELOPE_VERSION = 1
DATA_ALG = "A256GCM"
KEK_ALG = "A256KW"  # AES key wrap, RFC 3394 (JWA RFC 7518 §4.4 name)
DEVELOPMENT_KEK_ID = "development-insecure"
_DEVELOPMENT_KEK = hashlib.sha256(b"healthflow development KEK - not a secret").digest()

Envelope = dict[str, Any]


class KeyUnwrapError(ConfigurationError):
    """An envelope cannot be opened: its KEK is not configured, or the KEK or the
    record is wrong. The message names the record and the KEK id, never key bytes."""


class KeyWrapper(Protocol):
    """Envelope encryption of small secrets (a local KEK, or a KMS)."""

    @property
    def current_kek_id(self) -> str:
        """The id new envelopes are wrapped with."""
        ...

    async def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> Envelope:
        """An envelope of ``plaintext`` bound to ``context``."""
        ...

    async def unwrap(self, envelope: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        """The plaintext. Raises :class:`KeyUnwrapError`."""
        ...

    async def rewrap(self, envelope: Mapping[str, Any],
                     context: Mapping[str, str]) -> Envelope:
        """The same envelope with its data key wrapped by the current KEK (checked
        against ``context`` first). Raises :class:`KeyUnwrapError`."""
        ...


def _aad(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def _describe(context: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(context.items()))


class LocalKeyWrapper:
    """:class:`KeyWrapper` with KEKs held in memory: ``keks`` maps id → 32 bytes,
    ``current`` is the id new envelopes use."""

    def __init__(self, keks: Mapping[str, bytes], current: str) -> None:
        if current not in keks:
            raise ValueError("the current KEK id is not among the KEKs")
        for kek_id, kek in keks.items():
            if len(kek) != 32:
                raise ValueError(f"KEK {kek_id!r} is {len(kek)} bytes, not 32")
        self._keks = dict(keks)
        self._current = current

    @property
    def current_kek_id(self) -> str:
        return self._current

    @property
    def kek_ids(self) -> tuple[str, ...]:
        return tuple(self._keks)

    async def wrap(self, plaintext: bytes, context: Mapping[str, str]) -> Envelope:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _aad(context))
        return {"v": ENVELOPE_VERSION, "alg": DATA_ALG, "nonce": nonce,
                "ciphertext": ciphertext, "kek_id": self._current, "kek_alg": KEK_ALG,
                "wrapped_key": aes_key_wrap(self._keks[self._current], data_key)}

    def _data_key(self, envelope: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        kek_id = envelope.get("kek_id")
        if envelope.get("kek_alg") != KEK_ALG or envelope.get("alg") != DATA_ALG:
            raise KeyUnwrapError(f"the key of {_describe(context)} uses an unknown "
                                 f"algorithm ({envelope.get('alg')}/{envelope.get('kek_alg')})")
        kek = self._keks.get(str(kek_id))
        if kek is None:
            raise KeyUnwrapError(
                f"the key of {_describe(context)} is wrapped with KEK {kek_id!r}, which is "
                f"not configured (configured: {', '.join(self._keks)}); add it to "
                "KEY_ENCRYPTION_KEYS as a previous KEK")
        try:
            return aes_key_unwrap(kek, bytes(envelope["wrapped_key"]))
        except (InvalidUnwrap, ValueError, KeyError):
            raise KeyUnwrapError(
                f"the key of {_describe(context)} does not unwrap with KEK {kek_id!r}: "
                "that id names a different key in KEY_ENCRYPTION_KEYS") from None

    async def unwrap(self, envelope: Mapping[str, Any], context: Mapping[str, str]) -> bytes:
        data_key = self._data_key(envelope, context)
        try:
            return AESGCM(data_key).decrypt(bytes(envelope["nonce"]),
                                            bytes(envelope["ciphertext"]), _aad(context))
        except (InvalidTag, ValueError, KeyError):
            raise KeyUnwrapError(
                f"the key of {_describe(context)} fails its integrity check: the envelope "
                "belongs to another record or was altered") from None

    async def rewrap(self, envelope: Mapping[str, Any],
                     context: Mapping[str, str]) -> Envelope:
        await self.unwrap(envelope, context)  # checks the record before re-wrapping
        data_key = self._data_key(envelope, context)
        return dict(envelope) | {"kek_id": self._current, "kek_alg": KEK_ALG,
                                 "wrapped_key": aes_key_wrap(self._keks[self._current],
                                                             data_key)}


def stale(wrapper: KeyWrapper, envelope: Mapping[str, Any] | None) -> bool:
    """True when ``envelope`` is wrapped with a KEK other than the current one."""
    return envelope is not None and envelope.get("kek_id") != wrapper.current_kek_id


async def kept_key(collection: AsyncCollection[Any], record_id: str, wrapper: KeyWrapper,
                   context: Mapping[str, str], *, generate: Callable[[], bytes],
                   clear_field: str = "seed") -> bytes:
    """The private key a service generated for itself and keeps in ``collection``
    (audit's checkpoint key, prescription's signing key, notification's VAPID key):
    made once, the first replica's wins, stored only as an envelope in
    ``{_id: record_id, private_key: <envelope>, created_at}``; protected first
    (:func:`protect_kept_key`). Returns the key's bytes (``generate()``'s form).

    Raises:
        KeyUnwrapError: the kept envelope does not open with the configured KEKs.
    """
    from pymongo.errors import DuplicateKeyError  # keywrap itself loads no driver

    await protect_kept_key(collection, record_id, wrapper, context, clear_field=clear_field)
    kept = await collection.find_one({"_id": record_id})
    if kept is None:
        log.warning("no configured key: the key of %s is generated and kept in the database "
                    "(local runs)", _describe(context))
        with contextlib.suppress(DuplicateKeyError):
            await collection.insert_one({"_id": record_id,
                                         "private_key": await wrapper.wrap(generate(), context),
                                         "created_at": datetime.now(UTC)})
        kept = await collection.find_one({"_id": record_id})
        assert kept is not None
    return await wrapper.unwrap(kept["private_key"], context)


async def protect_kept_key(collection: AsyncCollection[Any], record_id: str,
                           wrapper: KeyWrapper, context: Mapping[str, str], *,
                           clear_field: str = "seed") -> str | None:
    """:func:`protect_record` for the one record ``record_id`` of :func:`kept_key` (its
    envelope in ``private_key``, an older release's base64url text in ``clear_field``).

    Raises:
        KeyUnwrapError: the kept envelope does not open with the configured KEKs.
    """
    kept = await collection.find_one({"_id": record_id})
    if kept is None:
        return None
    done = await protect_record(collection, kept, wrapper, context, field="private_key",
                                clear_field=clear_field)
    if done:
        log.info("protected %s", _describe(context),
                 extra={"done": done, "kek_id": wrapper.current_kek_id})
    return done


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def protect_record(collection: AsyncCollection[Any], doc: Mapping[str, Any],
                         wrapper: KeyWrapper, context: Mapping[str, str], *, field: str,
                         clear_field: str | None = None,
                         decode: Callable[[str], bytes] = _unb64url) -> str | None:
    """Bring one stored record ``doc`` (as read from ``collection``) under the current
    KEK: wrap the clear key an older release kept as text in ``clear_field`` (default
    ``field``; ``decode`` turns that text into the key's bytes, base64url by default)
    into an envelope in ``field``, dropping ``clear_field``; or re-wrap an envelope in
    ``field`` made with a previous KEK. The write is guarded by the stored value, so a
    replica migrating at once, or a new key written meanwhile, is never overwritten.

    Returns ``"wrapped"`` or ``"rewrapped"`` when this call wrote, else ``None`` (nothing
    to do, or someone else wrote first).

    Raises:
        KeyUnwrapError: the stored envelope does not open with the configured KEKs.
    """
    clear_field = clear_field or field
    clear, current = doc.get(clear_field), doc.get(field)
    update: dict[str, Any]
    if isinstance(clear, str):
        guard: dict[str, Any] = {clear_field: clear}
        update = {"$set": {field: await wrapper.wrap(decode(clear), context)}}
        if clear_field != field:
            update["$unset"] = {clear_field: ""}
        done = "wrapped"
    elif isinstance(current, Mapping) and stale(wrapper, current):
        guard = {f"{field}.kek_id": current["kek_id"],
                 f"{field}.wrapped_key": current["wrapped_key"]}
        update = {"$set": {field: await wrapper.rewrap(current, context)}}
        done = "rewrapped"
    else:
        return None
    result = await collection.update_one({"_id": doc["_id"], **guard}, update)
    return done if result.modified_count else None


def new_kek() -> str:
    """A fresh KEK, base64url without padding (32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def parse_keks(text: str, variable: str) -> tuple[dict[str, bytes], str]:
    """``"id:key, id:key"`` (or one per line) → (id → 32 bytes, current id).

    Raises:
        ConfigurationError: naming ``variable``, never showing a key.
    """
    keks: dict[str, bytes] = {}
    entries = [e.strip() for e in text.replace("\n", ",").split(",") if e.strip()]
    for number, entry in enumerate(entries, start=1):
        kek_id, _, encoded = entry.rpartition(":")
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(f"{variable}: entry {number} is not 32 bytes "
                                     "of base64url (id:key)")
        kek_id = kek_id or "kek-" + hashlib.sha256(raw).hexdigest()[:12]
        if kek_id in keks:
            raise ConfigurationError(f"{variable}: KEK id {kek_id!r} is given twice")
        keks[kek_id] = raw
    if not keks:
        raise ConfigurationError(f"{variable}: no key-encryption key")
    return keks, next(iter(keks))


class KeyEncryptionSettings(ServiceSettings):
    """Settings of a service that keeps private keys in its database."""

    key_encryption_keys: SecretStr | None = None
    """KEKs ``id:base64url-32-bytes``, comma or new-line separated, current first."""
    key_encryption_keys_file: str | None = None
    """A file with the same content (a mounted Kubernetes/compose secret); wins when set."""

    def kek_source(self) -> tuple[str, str] | None:
        """(the KEK text, the variable it came from), or ``None`` when unset."""
        cls = type(self)
        if self.key_encryption_keys_file and self.key_encryption_keys_file.strip():
            variable = env_name(cls, "key_encryption_keys_file")
            try:
                text = Path(self.key_encryption_keys_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"{variable}: cannot read the file "
                                         f"({type(exc).__name__})") from None
            return text, variable
        if self.key_encryption_keys is not None and self.key_encryption_keys.get_secret_value(
                ).strip():  # compose passes an unset variable as ""
            return (self.key_encryption_keys.get_secret_value(),
                    env_name(cls, "key_encryption_keys"))
        return None

    def key_wrapper(self) -> LocalKeyWrapper:
        """The wrapper of the configured KEKs (development: the built-in one if none).

        Raises:
            ConfigurationError: unreadable or malformed KEKs; none in production.
        """
        source = self.kek_source()
        if source is None:
            if self.healthflow_env == "production":
                raise ConfigurationError(f"{env_name(type(self), 'key_encryption_keys')}: "
                                         "production needs a key-encryption key")
            log.warning("no KEY_ENCRYPTION_KEYS: private keys are wrapped with the "
                        "built-in development KEK")
            return LocalKeyWrapper({DEVELOPMENT_KEK_ID: _DEVELOPMENT_KEK}, DEVELOPMENT_KEK_ID)
        keks, current = parse_keks(*source)
        if self.healthflow_env != "production":
            keks.setdefault(DEVELOPMENT_KEK_ID, _DEVELOPMENT_KEK)
        return LocalKeyWrapper(keks, current)

    def own_production_problems(self) -> list[str]:
        problems = super().own_production_problems()
        try:
            if self.kek_source() is None:
                problems.append(f"{env_name(type(self), 'key_encryption_keys')}: production "
                                "needs a key-encryption key (or KEY_ENCRYPTION_KEYS_FILE)")
            else:
                self.key_wrapper()
        except ConfigurationError as exc:
            problems.append(str(exc))
        return problems
