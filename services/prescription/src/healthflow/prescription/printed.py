"""Use cases of printed prescriptions: the signed PDF, its public verification, the
signing keys (current and rotated out) and their published JWK Set.

What is signed is :func:`healthflow.prescription.domain.signed_message`; the key
machinery is :mod:`.keys`, the rendering :mod:`.printing`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.keywrap import kept_key
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.prescription import keys, printing, store
from healthflow.prescription.domain import (
    PrescriptionNotFound,
    ensure_printable,
    signed_message,
)
from healthflow.prescription.service import ensure_reader, load, record_access
from healthflow.prescription.settings import Settings

log = logging.getLogger(__name__)

KEY_CONTEXT = {"service": "prescription",
               "record": f"{store.SIGNING_KEYS}/{store.SIGNING_KEY_ID}"}


def settings_of(runtime: ServiceRuntime) -> Settings:
    """The prescription service's own settings (the runtime holds them as the base type)."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return settings


async def signing_key(runtime: ServiceRuntime) -> keys.SigningKey:
    """The configured key (``PRESCRIPTION_SIGNING_KEY``, checked when the settings
    load), else the database's, made once. Its public JWK joins the key set.

    A configured key retires a seed an older release kept in clear
    (:func:`retire_clear_seed`). Rotation: configure a new seed and restart; signatures
    carry their ``kid`` and the old key's public part stays in the key set
    (``public_keys``), so what it signed still verifies. A kept key is an envelope
    (:func:`~healthflow.common.keywrap.kept_key`, bound to :data:`KEY_CONTEXT`); made or
    opened once per process.

    Raises:
        KeyUnwrapError: the kept key does not open with the configured KEKs.
    """
    cached = runtime.state.get("prescription_signing_key")
    if isinstance(cached, keys.SigningKey):
        return cached
    configured = settings_of(runtime).signing_key
    if configured is not None:
        key = keys.from_seed(keys.unb64url(configured.get_secret_value()))
        await retire_clear_seed(runtime)
    else:
        settings = settings_of(runtime)
        seed = await kept_key(runtime.db[store.SIGNING_KEYS], store.SIGNING_KEY_ID,
                              settings.key_wrapper(), KEY_CONTEXT, generate=keys.new_seed)
        key = keys.from_seed(seed)
    await store.remember_public_key(runtime.db, key.kid, key.jwk(), utcnow())
    runtime.state["prescription_signing_key"] = key
    return key


async def retire_clear_seed(runtime: ServiceRuntime) -> str | None:
    """Destroy the seed an older release generated and kept in clear, now that a
    configured key signs instead: nothing signs with it again, and no KEK need exist to
    wrap it. Its public key stays in the key set first, so what it signed still
    verifies. An envelope (a kept key of this release) is left alone. Returns the
    retired key's ``kid``, or ``None`` when there was none."""
    collection = runtime.db[store.SIGNING_KEYS]
    kept = await collection.find_one({"_id": store.SIGNING_KEY_ID,
                                      "seed": {"$type": "string"}})
    if kept is None:
        return None
    old = keys.from_seed(keys.unb64url(kept["seed"]))
    await store.remember_public_key(runtime.db, old.kid, old.jwk(), utcnow())
    await collection.delete_one({"_id": kept["_id"], "seed": kept["seed"]})
    log.warning("destroyed the signing key an older release kept in clear (a configured "
                "key signs now); its public key stays published", extra={"kid": old.kid})
    return old.kid


async def key_set(runtime: ServiceRuntime) -> list[dict[str, Any]]:
    """The published key set (RFC 7517 §5 ``keys``): the current signing key first, then
    every key that signed before a rotation, so older printed prescriptions still verify."""
    current = await signing_key(runtime)
    known = [d["jwk"] for d in await store.public_keys(runtime.db)]
    return [current.jwk()] + [jwk for jwk in known if jwk["kid"] != current.kid]


def verify_url(base_url: str, prescription_id: str) -> str:
    """The public verification address a printed prescription's QR code holds."""
    return f"{base_url.rstrip('/')}/api/v1/prescriptions/verify/{prescription_id}"


async def printable(runtime: ServiceRuntime, principal: Principal, prescription_id: str
                    ) -> bytes:
    """The PDF of an issued prescription, for whoever may read it, naming the hospital of
    its encounter when known and verified (``encounter.started`` → ``hospital.*``); its
    SHA-256 is signed (:func:`~healthflow.prescription.domain.signed_message`) and kept
    once. Its QR code holds the verification URL under the configured ``public_base_url``.

    Raises:
        PrescriptionNotFound (404), NotTreating / Forbidden (403), StateConflict (409):
        a draft, cancelled or withdrawn prescription is not printed.
    """
    key = await signing_key(runtime)
    base_url = settings_of(runtime).public_base_url

    async def write(uow: UnitOfWork) -> bytes:
        doc = await load(uow, prescription_id)
        await ensure_reader(uow, principal, doc["patient_id"], doc)
        record_access(uow, principal, doc["patient_id"], "pdf", doc["_id"])
        ensure_printable(doc["status"])
        names = await store.names(uow, [doc["patient_id"], doc["prescriber_id"]])
        view = printing.printed(doc, names, verify_url(base_url, prescription_id),
                                await _hospital_of(uow, doc["encounter_id"]))
        pdf = await asyncio.to_thread(printing.render_pdf, view)
        digest = hashlib.sha256(pdf).hexdigest()
        await store.add_document(uow, prescription_id, {
            "sha256": digest, "signature": key.sign(signed_message(prescription_id, digest)),
            "kid": key.kid, "signed_at": utcnow()})
        return pdf

    return await runtime.transact(write, actor=principal.actor)


async def _hospital_of(uow: UnitOfWork, encounter_id: str) -> Document | None:
    """The hospital of the encounter, as known from ``hospital.*`` events, when it is
    verified (None otherwise: a pending or rejected registration is not printed as the
    issuing institution, nor one kept before ``status`` was recorded)."""
    encounter = await store.get_encounter(uow, encounter_id)
    if encounter is None or not encounter.get("hospital_id"):
        return None
    hospital = await store.get_hospital(uow, encounter["hospital_id"])
    return hospital if hospital is not None and hospital.get("status") == "verified" else None


async def verification(runtime: ServiceRuntime, prescription_id: str,
                       sha256: str | None) -> dict[str, Any]:
    """What anyone holding a printed prescription may check (no names, no medication).

    Shape: ``{prescription_id, status, issued_at, documents: [{sha256, signature, kid,
    signed_at}], keys: [JWK], matches: bool | None}``; ``keys`` are the public keys
    its documents were signed with (by ``kid``, current or rotated out); ``matches``
    (with ``sha256``): whether that hash is one the service signed for this
    prescription and its signature verifies with the key its ``kid`` names.

    Raises:
        PrescriptionNotFound (404): unknown, or never printed.
    """
    doc = await store.get(runtime.db, prescription_id)
    if doc is None or not doc.get("documents"):
        raise PrescriptionNotFound(f"no printed prescription {prescription_id}")
    published = await key_set(runtime)
    by_kid = {jwk["kid"]: jwk for jwk in published}
    matches = None
    if sha256 is not None:
        wanted = sha256.lower()
        matches = any(d["sha256"] == wanted and d["kid"] in by_kid and keys.verify(
            by_kid[d["kid"]], signed_message(prescription_id, wanted), d["signature"])
            for d in doc["documents"])
    used = {d["kid"] for d in doc["documents"]}
    return {"prescription_id": doc["_id"], "status": doc["status"],
            "issued_at": doc["issued_at"], "documents": doc["documents"],
            "keys": [jwk for jwk in published if jwk["kid"] in used], "matches": matches}
