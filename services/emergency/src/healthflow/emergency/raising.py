"""Raising an emergency: by a patient in the app, by a dispatcher taking a call, or by a
clinician (issue 14).

Who raised it is recorded as ``raised_by`` (their user id) and in which capacity as
``raised_by_role``: ``patient``, ``dispatcher``, or the clinician's role (``doctor``,
``nurse``, ``patient_care``: the roles granted ``emergencies:raise_clinical``). A
caller holding several is taken in the first capacity of dispatcher, clinician,
patient. ``patient_id`` is the raising patient, or the patient a clinician names
(optional: someone collapsed in a waiting room has no known id), else ``None``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import ROLE_PERMISSIONS, Permission, Role
from healthflow.common.problems import UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.emergency import events, store
from healthflow.emergency.domain import (
    EmergencyOpen,
    IdempotencyKeyReused,
    NoLocation,
    Status,
    geo_point,
    triage,
)
from healthflow.emergency.schemas import RaiseIn

CLINICIAN_ROLES = tuple(r.value for r in Role
                        if Permission.EMERGENCIES_RAISE_CLINICAL in ROLE_PERMISSIONS[r])
"""The roles that raise as clinicians (``doctor``, ``nurse``, ``patient_care``), in
the order of :class:`healthflow.common.permissions.Role`."""


def capacity(principal: Principal) -> str:
    """The capacity ``principal`` raises in: ``dispatcher``; else the first clinician
    role they hold (:data:`CLINICIAN_ROLES`); else ``patient``; else (a token with
    neither, which the route refuses) their first role."""
    if principal.has(Permission.EMERGENCIES_DISPATCH):
        return "dispatcher"
    if principal.has(Permission.EMERGENCIES_RAISE_CLINICAL):
        for role in CLINICIAN_ROLES:
            if principal.has_role(role):
                return role
    if principal.has(Permission.EMERGENCIES_RAISE_OWN):
        return "patient"
    return sorted(principal.roles)[0] if principal.roles else "unknown"


RAISE_KEYS = uuid.UUID("5c1f3e0a-8b57-4d0e-9a57-2f4f6b1c9e21")
"""The namespace of :func:`raise_id` (fixed: ids must not change between releases)."""


def raise_id(raiser: str, idempotency_key: str) -> str:
    """The id of the emergency a raise with ``Idempotency-Key`` creates: a UUIDv5 (RFC
    9562 §5.5) of the raiser's id and the key, so a retry on any process of the service
    names the same emergency, and two raisers' keys never meet."""
    return str(uuid.uuid5(RAISE_KEYS, f"{raiser}\n{idempotency_key}"))


def fingerprint(body: RaiseIn) -> str:
    """SHA-256 (hex) of the raise's body as validated: a key sent again with another
    body is refused rather than answered with the first emergency. (Without a
    ``patient_id`` the bytes are those of the body before that field existed, so a
    retry across the upgrade still matches.)"""
    unset = {"patient_id"} if body.patient_id is None else None
    return hashlib.sha256(body.model_dump_json(exclude=unset).encode()).hexdigest()


def new_emergency(principal: Principal, body: RaiseIn, now: datetime,
                  emergency_id: str | None = None) -> Document:
    """The document of a raised emergency (triaged; ``emergency_id`` or a random UUID).

    Raises:
        NoLocation (422): a patient without a position, a dispatcher or clinician with
        neither position nor address.
        UnprocessableContent (422): a ``patient_id`` from anyone but a clinician.
    """
    role = capacity(principal)
    staff = role != "patient"  # a dispatcher or a clinician: an address will do
    if body.position is None and (not staff or body.address is None):
        raise NoLocation("give the position" + (" or the address" if staff else ""))
    if body.patient_id is not None and role not in CLINICIAN_ROLES:
        raise UnprocessableContent("only a clinician names the patient of an emergency")
    position = body.position.model_dump() if body.position else None
    return {
        "_id": emergency_id or str(uuid.uuid4()), "status": Status.RAISED.value,
        "priority": triage(body.triage.answers()).value, "triage": body.triage.model_dump(),
        "position": position,
        "location": (geo_point(position["latitude"], position["longitude"])
                     if position else None),
        "address": body.address, "what_happened": body.what_happened,
        "caller_phone": body.caller_phone if staff else None,
        "raised_by": principal.subject, "raised_by_role": role,
        "patient_id": principal.subject if role == "patient" else body.patient_id,
        "assignment": None, "escalated": None, "cancel_reason": None, "destination": None,
        "timeline": [{"status": Status.RAISED.value, "at": now, "by_role": role,
                      "by": principal.subject}],
        "version": 1, "created_at": now, "updated_at": now}


async def raise_emergency(runtime: ServiceRuntime, principal: Principal, body: RaiseIn,
                          idempotency_key: str | None = None) -> Document:
    """Raise an emergency (a patient for themselves, a dispatcher for a caller, a
    clinician for a patient); ``emergency.raised``. With ``idempotency_key`` (the
    ``Idempotency-Key`` header, draft-ietf-httpapi-idempotency-key-header) a retry of
    the same raise by the same raiser — after a timeout, or on another process after
    this one died — returns the emergency the first one created (as it is now) and
    publishes nothing again.

    Raises:
        EmergencyOpen (409): a patient's earlier emergency is still open (a second
        one would claim a second unit; they follow the first or call the dispatcher).
        IdempotencyKeyReused (422): the key came before with another body.
        NoLocation, UnprocessableContent (422): see :func:`new_emergency`.
    """
    emergency_id = raise_id(principal.subject, idempotency_key) if idempotency_key else None
    digest = fingerprint(body) if idempotency_key else None

    async def write(uow: UnitOfWork) -> Document:
        if emergency_id is not None and (held := await store.get(
                uow.db, emergency_id, session=uow.session)) is not None:
            return _replayed(held, digest)
        doc = new_emergency(principal, body, utcnow(), emergency_id)
        doc["request_fingerprint"] = digest
        if doc["raised_by_role"] == "patient":  # staff raise as many as they are told of
            await _one_open_per_patient(uow, principal.subject)
        await store.insert(uow.db, uow.session, doc)
        _publish(uow, doc)
        return doc

    try:
        return await runtime.transact(write, actor=principal.actor)
    except DuplicateKeyError:  # the same raise committed meanwhile (another process)
        held = await store.get(runtime.db, emergency_id) if emergency_id else None
        if held is None:
            raise
        return _replayed(held, digest)


async def _one_open_per_patient(uow: UnitOfWork, patient: str) -> None:
    await store.serialise_raiser(uow.db, uow.session, patient)
    if (open_ := await store.open_raised_by(uow.db, uow.session, patient)) is not None:
        raise EmergencyOpen(f"your emergency {open_['_id']} is still open: follow it "
                            "there, or call the dispatcher", emergency_id=open_["_id"])


def _publish(uow: UnitOfWork, doc: Document) -> None:
    position = doc["position"] or {}
    uow.publish(events.EmergencyRaised(
        emergency_id=doc["_id"], priority=doc["priority"],
        latitude=position.get("latitude"), longitude=position.get("longitude"),
        accuracy_m=position.get("accuracy_m"), raised_by_role=doc["raised_by_role"],
        patient_id=doc["patient_id"], raised_at=doc["created_at"]),
        subject=f"emergency/{doc['_id']}", patientid=doc["patient_id"])


def _replayed(held: Document, digest: str | None) -> Document:
    if held.get("request_fingerprint") != digest:
        raise IdempotencyKeyReused("this Idempotency-Key was sent before with another "
                                   "body: use a new key for a new emergency")
    return held
