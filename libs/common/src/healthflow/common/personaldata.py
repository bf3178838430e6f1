"""Sealing personal values under a person key, and opening them (crypto-shredding).

Each person (account) has one 256-bit *person key*, made and kept by the auth service
(``person_keys``, envelope-encrypted with the KEK: :mod:`healthflow.common.keywrap`).
A personal value an event must carry is sealed under it
(:class:`~healthflow.contracts.sealed.SealedValue`): AES-256-GCM, NIST SP 800-38D,
a random 96-bit nonce, associated data :func:`associated_data` (the subject and the
field, so a value moved to another person or field does not open). A consumer that
needs the value asks auth for the key (:class:`PersonKeys`, ``GET
/internal/person-keys/{user_id}``, on the services' network only), opens it once and
keeps the clear value only in its own read model, which it deletes on ``user.erased``.

Erasure destroys the key: sealed copies everywhere (queues, dead letters, outboxes, the
audit log, whose hash chain covers the ciphertext and so still verifies) stay, but
auth answers 404 for the key and nothing opens them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthflow.common.servicecredentials import caller_authorization
from healthflow.common.settings import ServiceSettings
from healthflow.contracts.sealed import SealedValue

log = logging.getLogger(__name__)

PERSON_KEYS_PATH = "/internal/person-keys"
KEY_BYTES = 32


class SealedValueError(ValueError):
    """A sealed value does not open under the key given: another key, subject or field,
    or an altered ciphertext."""


@dataclass(frozen=True)
class PersonKey:
    """A person's data key: ``key_id`` (what :class:`SealedValue` names) and 32 bytes."""

    key_id: str
    key: bytes

    def __repr__(self) -> str:  # never the key bytes in a log or a traceback
        return f"PersonKey(key_id={self.key_id!r})"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_person_key() -> PersonKey:
    """A fresh person key (random 256 bits, random 16-hex-digit id)."""
    return PersonKey(key_id="pk-" + os.urandom(8).hex(), key=AESGCM.generate_key(256))


def associated_data(subject: str, field: str, key_id: str) -> bytes:
    """The GCM associated data of ``field`` of ``subject``: the UTF-8 of the JSON object
    ``{"field", "key_id", "subject"}``, keys sorted, no spaces."""
    return json.dumps({"field": field, "key_id": key_id, "subject": subject},
                      sort_keys=True, separators=(",", ":")).encode()


def seal(key: PersonKey, subject: str, field: str, value: str) -> SealedValue:
    """``value`` (UTF-8) sealed under ``key`` for ``field`` of ``subject``."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(key.key).encrypt(nonce, value.encode(),
                                         associated_data(subject, field, key.key_id))
    return SealedValue(key_id=key.key_id, nonce=_b64(nonce), ciphertext=_b64(ciphertext))


def seal_optional(key: PersonKey, subject: str, field: str,
                  value: str | None) -> SealedValue | None:
    """:func:`seal`, ``None`` for ``None``."""
    return None if value is None else seal(key, subject, field, value)


def open_sealed(key: PersonKey, subject: str, field: str, sealed: SealedValue) -> str:
    """The clear value of ``sealed``.

    Raises:
        SealedValueError: another key, subject or field, or altered bytes.
    """
    if sealed.key_id != key.key_id:
        raise SealedValueError(f"{field} is sealed under another key")
    try:
        clear = AESGCM(key.key).decrypt(_unb64(sealed.nonce), _unb64(sealed.ciphertext),
                                        associated_data(subject, field, key.key_id))
    except (InvalidTag, ValueError):
        raise SealedValueError(f"{field} does not open under its person key") from None
    return clear.decode()


def person_key_from_json(body: Mapping[str, Any]) -> PersonKey:
    """``{"key_id", "key": base64url}`` (auth's answer) → :class:`PersonKey`.

    Raises:
        ValueError: malformed.
    """
    key = _unb64(str(body["key"]))
    if len(key) != KEY_BYTES:
        raise ValueError("a person key is 32 bytes")
    return PersonKey(key_id=str(body["key_id"]), key=key)


def person_key_json(key: PersonKey) -> dict[str, str]:
    """:class:`PersonKey` → ``{"key_id", "key": base64url}`` (auth's answer)."""
    return {"key_id": key.key_id, "key": _b64(key.key)}


def person_keys_url(jwks_url: str) -> str:
    """The auth service's person-key route: the JWKS URL's origin + :data:`PERSON_KEYS_PATH`."""
    parts = urlsplit(jwks_url)
    return urlunsplit((parts.scheme, parts.netloc, PERSON_KEYS_PATH, "", ""))


class PersonKeys:
    """Reads person keys from auth (``GET <url>/<user_id>``): a :class:`PersonKey`, or
    ``None`` when auth has none (erased, or never made). Keys are not cached: a consumer
    opens a person's values once, when it builds its read model.

    Raises (from :meth:`get`): :class:`httpx.HTTPError` when auth cannot answer (the
    consumer's delivery is retried, then dead-lettered).
    """

    def __init__(self, url: str, *, timeout: float = 5.0,
                 headers: Mapping[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})  # the service credential (servicecredentials)

    async def get(self, user_id: str) -> PersonKey | None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(f"{self.url}/{quote(user_id, safe='')}",
                                        headers={"Accept": "application/json",
                                                 **self.headers})
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        response.raise_for_status()
        return person_key_from_json(response.json())

    async def open_fields(self, subject: str, sealed: Mapping[str, SealedValue | None]
                          ) -> dict[str, str | None] | None:
        """Each of ``sealed`` (field → value) opened with ``subject``'s key; ``None``
        when the key is gone (the person was erased: keep nothing personal). A value
        that does not open is ``None`` and logged (by field name, never the value)."""
        key = await self.get(subject)
        if key is None:
            return None
        opened: dict[str, str | None] = {}
        for field, value in sealed.items():
            try:
                opened[field] = None if value is None else open_sealed(key, subject, field,
                                                                       value)
            except SealedValueError as exc:
                log.warning("a sealed personal value does not open: %s", exc,
                            extra={"field": field})
                opened[field] = None
        return opened


def person_keys_for(settings: ServiceSettings) -> PersonKeys:
    """The :class:`PersonKeys` of ``settings`` (``PERSON_KEYS_URL``, else next to the JWKS),
    calling as ``settings.service_name`` with its credential (``INTERNAL_TOKEN``)."""
    return PersonKeys(settings.person_keys_url or person_keys_url(settings.jwks_url),
                      headers=caller_authorization(settings))
