"""Use cases of the prescription service; routes and handlers call these.

Each runs in one ``runtime.transact`` with the events it causes.

Who may do what (:func:`ensure_reader`, :func:`ensure_prescriber`):

* a doctor (``prescriptions:write_treated``) prescribes only in an encounter they
  conducted (``encounters`` read model from the records service's events): that
  encounter is their care relationship with its patient; only the prescriber
  issues a draft, cancels or withdraws;
* the patient reads their own (``prescriptions:read_own``), drafts excepted;
* doctors read (``prescriptions:read_treated``) what they prescribed and the
  prescriptions of patients they conducted an encounter with;
* pharmacists (``prescriptions:dispense``) read issued prescriptions by id, list a
  patient's active ones, and dispense.

A patient asking for another patient's prescription, and a pharmacist asking for
a draft, get 404: existence is not revealed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict, Forbidden
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.hospital import HospitalSnapshot
from healthflow.contracts.patient import PatientAllergiesChanged
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.prescription import events, store
from healthflow.prescription.domain import (
    NotPrescriber,
    NotTreating,
    NotYourEncounter,
    PrescriptionNotFound,
    SafetyIssue,
    Status,
    UnknownEncounter,
    allowed_total,
    amount,
    ensure_transition,
    plan_dispense,
    plan_issue,
    safety_conflicts,
)
from healthflow.prescription.schemas import CheckIn, DispenseIn, Override, PrescriptionIn
from healthflow.prescription.terminology import ROUTE_CODES, SNOMED_SYSTEM, identify

# ----------------------------------------------------------------------------- access


def _patient_only(principal: Principal) -> bool:
    return (principal.has(Permission.PRESCRIPTIONS_READ_OWN)
            and not principal.has(Permission.PRESCRIPTIONS_READ_TREATED)
            and not principal.has(Permission.PRESCRIPTIONS_DISPENSE))


async def ensure_reader(uow: UnitOfWork, principal: Principal, patient_id: str,
                        doc: Document | None = None) -> None:
    """Whether ``principal`` may read ``patient_id``'s prescriptions (``doc``: one of them).

    Raises:
        PrescriptionNotFound (404): a patient asking for another's prescription, or a
            draft for anyone but doctors; NotTreating (403): a doctor who neither prescribed it
            nor conducted an encounter with the patient; Forbidden (403): anyone else.
    """
    status = doc["status"] if doc else None
    if principal.subject == patient_id and principal.has(Permission.PRESCRIPTIONS_READ_OWN):
        if status == Status.DRAFT:
            raise PrescriptionNotFound("no such prescription")
        return
    if _patient_only(principal):
        if doc is None:
            raise Forbidden("you may only read your own prescriptions")
        raise PrescriptionNotFound("no such prescription")
    if principal.has(Permission.PRESCRIPTIONS_READ_TREATED):
        if (doc and doc["prescriber_id"] == principal.subject) or await store.treats(
                uow, principal.subject, patient_id):
            return
        if not principal.has(Permission.PRESCRIPTIONS_DISPENSE):
            raise NotTreating("you read the prescriptions of patients you treat only")
    if principal.has(Permission.PRESCRIPTIONS_DISPENSE):
        if status == Status.DRAFT:
            raise PrescriptionNotFound("no such prescription")
        return
    raise Forbidden("you may not read these prescriptions")


def record_access(uow: UnitOfWork, principal: Principal, patient_id: str, scope: str,
                  prescription_id: str | None = None) -> None:
    """Publish ``prescription.accessed`` unless the patient reads their own (every read by
    a doctor or pharmacist is an audit event)."""
    if principal.subject == patient_id:
        return
    uow.publish(events.PrescriptionAccessed(
        patient_id=patient_id, prescription_id=prescription_id,
        accessor_id=principal.subject, accessor_roles=sorted(principal.roles), scope=scope),
        subject=f"patient/{patient_id}", patientid=patient_id)


def ensure_prescriber(principal: Principal, doc: Document) -> None:
    """Raises NotPrescriber (403) unless ``principal`` wrote ``doc``."""
    if doc["prescriber_id"] != principal.subject:
        raise NotPrescriber("only the prescribing doctor changes a prescription")


async def load(uow: UnitOfWork, prescription_id: str) -> Document:
    """Raises PrescriptionNotFound (404)."""
    doc = await store.get(uow.db, prescription_id, session=uow.session)
    if doc is None:
        raise PrescriptionNotFound(f"no prescription {prescription_id}")
    return doc


async def _save(uow: UnitOfWork, doc: Document, fields: Document,
                push: Document | None = None) -> Document:
    if not await store.update(uow, doc, fields, push):
        raise Conflict("the prescription changed concurrently; reload and retry")
    return await load(uow, doc["_id"])


# ----------------------------------------------------------------------------- prescribing


def new_prescription(body: PrescriptionIn, encounter: Document, by: str,
                     now: datetime) -> Document:
    """The draft document of ``body`` in ``encounter`` (shape in :mod:`.store`)."""
    drug = identify(body.medication.text, body.medication.code, body.medication.system)
    code, display = ROUTE_CODES[body.route]
    quantity = body.quantity.model_dump()
    return {
        "_id": str(uuid.uuid4()), "patient_id": encounter["patient_id"],
        "encounter_id": encounter["_id"], "prescriber_id": by, "status": Status.DRAFT.value,
        "medication": {**body.medication.model_dump(), "ingredient": drug.ingredient,
                       "drug_class": drug.drug_class, "key": drug.key},
        "dosage": {"dose": body.dose.model_dump(),
                   "route": {"name": body.route.value, "code": code, "system": SNOMED_SYSTEM,
                             "display": display},
                   "frequency": body.frequency.model_dump(mode="json"),
                   "duration": body.duration.model_dump(mode="json") if body.duration else None,
                   "instructions": body.instructions},
        "dispense_request": {"quantity": quantity, "repeats": body.repeats},
        "allowed_total": allowed_total(quantity["value"], body.repeats),
        "dispensed_total": 0.0, "dispenses": [], "override": None, "status_reason": None,
        "created_at": now, "issued_at": None, "updated_at": now, "version": 1,
    }


async def _issue(uow: UnitOfWork, doc: Document, override: Override | None,
                 by: str) -> Document:
    """Run the safety checks and make ``doc`` active; ``prescription.issued``.

    Raises:
        SafetyConflict (409), StateConflict (409), Conflict (409).
    """
    ensure_transition(doc["status"], Status.ACTIVE)
    allergies = await store.allergies_of(uow, doc["patient_id"])
    same = await store.active_same_drug(uow, doc["patient_id"], doc["medication"]["key"],
                                        exclude=doc["_id"])
    drug = identify(doc["medication"]["text"], doc["medication"]["code"],
                    doc["medication"]["system"])
    now = utcnow()
    issues = safety_conflicts(drug, (allergies or {}).get("allergies", []), same)
    kept = plan_issue(issues, override.reason if override else None, by, now)
    after = await _save(uow, doc, {"status": Status.ACTIVE.value, "issued_at": now,
                                   "updated_at": now, "override": kept})
    uow.publish(events.PrescriptionIssued(
        prescription_id=doc["_id"], patient_id=doc["patient_id"],
        encounter_id=doc["encounter_id"], prescriber_id=doc["prescriber_id"], issued_at=now,
        override=events.SafetyOverride(
            reason=kept["reason"],
            conflicts=[{"kind": c["kind"], "with_id": c["with_id"]} for c in kept["conflicts"]])
        if kept else None),
        subject=f"prescription/{doc['_id']}", patientid=doc["patient_id"])
    return after


async def _own_encounter(uow: UnitOfWork, principal: Principal, encounter_id: str
                         ) -> Document:
    """Raises UnknownEncounter (422) or NotYourEncounter (403)."""
    encounter = await store.get_encounter(uow, encounter_id)
    if encounter is None:
        raise UnknownEncounter(f"no started encounter {encounter_id} is known")
    if encounter["practitioner_id"] != principal.subject:
        raise NotYourEncounter("a doctor prescribes in encounters they conduct")
    return encounter


async def check(runtime: ServiceRuntime, principal: Principal, body: CheckIn
                ) -> list[SafetyIssue]:
    """The conflicts prescribing ``body.medication`` in the encounter would meet, nothing
    written (the same checks as issuing). Raises as :func:`_own_encounter`."""

    async def read(uow: UnitOfWork) -> list[SafetyIssue]:
        encounter = await _own_encounter(uow, principal, body.encounter_id)
        drug = identify(body.medication.text, body.medication.code, body.medication.system)
        allergies = await store.allergies_of(uow, encounter["patient_id"])
        same = await store.active_same_drug(uow, encounter["patient_id"], drug.key)
        return safety_conflicts(drug, (allergies or {}).get("allergies", []), same)

    return await runtime.transact(read, actor=principal.actor)


async def prescribe(runtime: ServiceRuntime, principal: Principal, body: PrescriptionIn
                    ) -> Document:
    """A prescription in an encounter the caller conducted: a draft, or issued at once.

    The encounter is in progress or finished (the records service publishes no
    other): as in the records service, a doctor may write up after the consultation.

    Raises:
        UnknownEncounter (422): the encounter is not (yet) known here;
        NotYourEncounter (403): another doctor's encounter; SafetyConflict (409):
        see :func:`healthflow.prescription.domain.plan_issue`.
    """

    async def write(uow: UnitOfWork) -> Document:
        encounter = await _own_encounter(uow, principal, body.encounter_id)
        doc = new_prescription(body, encounter, principal.subject, utcnow())
        await store.insert(uow, doc)
        if body.draft:
            return doc
        return await _issue(uow, doc, body.override, principal.subject)

    return await runtime.transact(write, actor=principal.actor)


async def issue(runtime: ServiceRuntime, principal: Principal, prescription_id: str,
                override: Override | None) -> Document:
    """A draft becomes active, by its prescriber, after the safety checks."""

    async def write(uow: UnitOfWork) -> Document:
        doc = await load(uow, prescription_id)
        await ensure_reader(uow, principal, doc["patient_id"], doc)
        ensure_prescriber(principal, doc)
        return await _issue(uow, doc, override, principal.subject)

    return await runtime.transact(write, actor=principal.actor)


async def stop(runtime: ServiceRuntime, principal: Principal, prescription_id: str,
               target: Status, reason: str) -> Document:
    """``cancelled`` or ``entered-in-error``, by the prescriber; ``prescription.cancelled``.

    Raises:
        PrescriptionNotFound (404), NotPrescriber / NotTreating (403),
        StateConflict (409): not draft or active.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await load(uow, prescription_id)
        await ensure_reader(uow, principal, doc["patient_id"], doc)
        ensure_prescriber(principal, doc)
        ensure_transition(doc["status"], target)
        now = utcnow()
        after = await _save(uow, doc, {"status": target.value, "status_reason": reason,
                                       "updated_at": now})
        uow.publish(events.PrescriptionCancelled(
            prescription_id=doc["_id"], patient_id=doc["patient_id"], status=target.value,
            previous_status=doc["status"], cancelled_by=principal.subject, cancelled_at=now),
            subject=f"prescription/{doc['_id']}", patientid=doc["patient_id"])
        return after

    return await runtime.transact(write, actor=principal.actor)


# ----------------------------------------------------------------------------- dispensing


async def dispense(runtime: ServiceRuntime, principal: Principal, prescription_id: str,
                   body: DispenseIn) -> Document:
    """A pharmacist hands out ``body.quantity``; ``prescription.dispensed``.

    The prescription completes when everything allowed is out.

    Raises:
        PrescriptionNotFound (404); StateConflict (409): not active; UnitMismatch
        (422); OverDispense (409): more than ``quantity × (1 + repeats)`` in all.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await load(uow, prescription_id)
        if doc["status"] == Status.DRAFT:
            raise PrescriptionNotFound(f"no prescription {prescription_id}")
        outcome = plan_dispense(doc, body.quantity.value, body.quantity.unit)
        now = utcnow()
        record: dict[str, Any] = {"id": str(uuid.uuid4()), "by": principal.subject, "at": now,
                  "quantity": {"value": amount(body.quantity.value),
                               "unit": body.quantity.unit}}
        after = await _save(uow, doc, {"dispensed_total": outcome.total,
                                       "status": outcome.status.value, "updated_at": now},
                            push={"dispenses": record})
        uow.publish(events.PrescriptionDispensed(
            prescription_id=doc["_id"], patient_id=doc["patient_id"], dispense_id=record["id"],
            dispensed_by=principal.subject, dispensed_at=now, quantity=record["quantity"]["value"],
            unit=body.quantity.unit, dispensed_total=outcome.total,
            allowed_total=outcome.allowed, status=outcome.status.value),
            subject=f"prescription/{doc['_id']}", patientid=doc["patient_id"])
        return after

    return await runtime.transact(write, actor=principal.actor)


# ----------------------------------------------------------------------------- reading


async def read(runtime: ServiceRuntime, principal: Principal, prescription_id: str
               ) -> Document:
    """One prescription, for whoever :func:`ensure_reader` lets in."""

    async def get(uow: UnitOfWork) -> Document:
        doc = await load(uow, prescription_id)
        await ensure_reader(uow, principal, doc["patient_id"], doc)
        record_access(uow, principal, doc["patient_id"], "prescription", doc["_id"])
        return doc

    return await runtime.transact(get, actor=principal.actor)


async def list_for_patient(runtime: ServiceRuntime, principal: Principal, patient_id: str,
                           *, cursor: str | None, limit: int
                           ) -> tuple[list[Document], str | None]:
    """One page of the patient's prescriptions, oldest first, and the next cursor: all for
    doctors who treat them, all but drafts for the patient, the active ones for
    pharmacists. BadRequest (400) for a cursor this API did not issue."""

    async def get(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        await ensure_reader(uow, principal, patient_id)
        record_access(uow, principal, patient_id, "list")
        doctor = principal.subject != patient_id and principal.has(
            Permission.PRESCRIPTIONS_READ_TREATED) and await store.treats(
                uow, principal.subject, patient_id)
        statuses: list[str] | None = [Status.ACTIVE.value]
        if doctor:
            statuses = None
        elif principal.subject == patient_id:
            statuses = [s.value for s in Status if s is not Status.DRAFT]
        return await store.of_patient(uow, patient_id, statuses, cursor=cursor, limit=limit)

    return await runtime.transact(get, actor=principal.actor)


# ----------------------------------------------------------------------------- from events


async def person_registered(uow: UnitOfWork, user_id: str, full_name: str) -> None:
    """The name printed for ``user_id`` (patient or prescriber); idempotent."""
    await store.put_person(uow, user_id, full_name)


async def person_erased(uow: UnitOfWork, user_id: str) -> None:
    """``user.erased``: the name of ``user_id`` is deleted (printed as unknown after)."""
    await store.delete_person(uow, user_id)


async def encounter_started(uow: UnitOfWork, data: EncounterStarted) -> None:
    """Know the encounter (in progress unless its finish came first) and its hospital;
    idempotent."""
    existing = await store.get_encounter(uow, data.encounter_id)
    fields: dict[str, Any] = {"started_at": data.started_at}
    if data.hospital_id is not None:
        fields["hospital_id"] = data.hospital_id
    if existing is None or existing.get("status") != "finished":
        fields["status"] = "in-progress"
    await store.put_encounter(uow, data.encounter_id, fields, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id})


async def encounter_finished(uow: UnitOfWork, data: EncounterFinished) -> None:
    """The encounter is finished (it may arrive before its start); idempotent."""
    fields: dict[str, Any] = {"status": "finished", "started_at": data.started_at,
                              "finished_at": data.finished_at}
    if data.hospital_id is not None:
        fields["hospital_id"] = data.hospital_id
    await store.put_encounter(uow, data.encounter_id, fields, {
        "patient_id": data.patient_id, "practitioner_id": data.practitioner_id})


async def hospital_changed(uow: UnitOfWork, data: HospitalSnapshot) -> None:
    """Keep the hospital's name, place and ``status`` (``pending`` | ``verified`` |
    ``rejected``) for printing (newest ``version`` wins); only a verified one is printed."""
    await store.put_hospital(uow, data.hospital_id, data.version, {
        "name": data.name, "city": data.city, "country": data.country,
        "status": data.status})


async def allergies_changed(uow: UnitOfWork, data: PatientAllergiesChanged) -> None:
    """Replace the patient's allergy list unless a newer ``profile_version`` is kept."""
    kept = await store.allergies_of(uow, data.patient_id)
    if kept is not None and kept["profile_version"] >= data.profile_version:
        return
    await store.put_allergies(uow, data.patient_id, {
        "_id": data.patient_id, "profile_version": data.profile_version,
        "allergies": [a.model_dump() for a in data.allergies], "changed_at": data.changed_at})
