"""Use cases of the patient service; routes and handlers both call these.

A change of the allergies also publishes ``patient.allergies_changed`` (the whole
list, for the prescription service's safety checks) in the same transaction.

Reads of a chart by anyone but the patient run in a transaction so that the
``patient.record_accessed`` event is committed to the outbox with the read:
no access goes unrecorded.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict, Forbidden
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.patient import events, store
from healthflow.patient.domain import (
    AccessorRole,
    NotTreating,
    ProfileNotFound,
    Purpose,
    default_purpose,
    new_profile,
    plan_update,
)
from healthflow.patient.schemas import PatientPatch


async def register(uow: UnitOfWork, user_id: str, *, full_name: str | None,
                   email: str | None, phone: str | None) -> bool:
    """Create the profile of a new patient account; ``False`` if it already exists."""
    if await store.get(uow.db, user_id, session=uow.session) is not None:
        return False
    now = utcnow()
    doc = new_profile(user_id, full_name=full_name, email=email, phone=phone, now=now)
    doc["name_key"] = store.name_key(doc["name"])
    try:
        await uow.db[store.PATIENTS].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        return False
    uow.publish(events.PatientRegistered(patient_id=user_id, registered_at=now),
                subject=user_id, patientid=user_id)
    return True


async def get_own(runtime: ServiceRuntime, principal: Principal) -> Document:
    """The caller's own profile. Raises ProfileNotFound (404) before registration lands."""
    doc = await store.get(runtime.db, principal.subject)
    if doc is None:
        raise ProfileNotFound("no patient profile exists for this account yet")
    return doc


async def update_own(runtime: ServiceRuntime, principal: Principal, patch: PatientPatch
                     ) -> Document:
    """Apply ``patch`` to the caller's profile; publish what changed.

    Emits ``patient.updated`` (section names) when anything changed and one
    ``patient.consent_changed`` per channel whose consent flipped.

    Raises:
        ProfileNotFound (404); Conflict (409) on a concurrent update.
    """
    # Given sections in full (defaults included), so equal content compares equal.
    given = {k: v for k, v in patch.model_dump(mode="json").items()
             if k in patch.model_fields_set}
    patient_id = principal.subject

    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, patient_id, session=uow.session)
        if doc is None:
            raise ProfileNotFound("no patient profile exists for this account yet")
        update = plan_update(doc, given, utcnow())
        if not update.fields:
            return doc
        fields = dict(update.fields)
        if "name" in fields:
            fields["name_key"] = store.name_key(fields["name"])
        result = await uow.db[store.PATIENTS].update_one(
            {"_id": patient_id, "version": doc["version"]},
            {"$set": fields, "$inc": {"version": 1}}, session=uow.session)
        if result.matched_count != 1:
            raise Conflict("the profile changed concurrently; reload and retry")
        uow.publish(events.PatientUpdated(patient_id=patient_id, sections=update.sections),
                    subject=patient_id, patientid=patient_id)
        if "allergies" in update.sections:
            uow.publish(_allergies_changed(patient_id, doc["version"] + 1,
                                           fields["allergies"], fields["updated_at"]),
                        subject=patient_id, patientid=patient_id)
        for change in update.consent_changes:
            uow.publish(events.PatientConsentChanged(patient_id=patient_id,
                                                     channel=change.channel,
                                                     granted=change.granted, at=change.at),
                        subject=patient_id, patientid=patient_id)
        after = await store.get(uow.db, patient_id, session=uow.session)
        assert after is not None
        return after

    result: Document = await runtime.transact(write, actor=principal.actor)
    return result


def _allergies_changed(patient_id: str, version: int, allergies: list[Document],
                       at: datetime) -> events.PatientAllergiesChanged:
    """``patient.allergies_changed``: the whole list (JSON form of ``AllergyIntolerance``)."""
    return events.PatientAllergiesChanged(
        patient_id=patient_id, profile_version=version, changed_at=at,
        allergies=[events.AllergySubstance(
            allergy_id=a["id"], substance=a["code"]["text"], code=a["code"].get("code"),
            system=a["code"].get("system"), criticality=a.get("criticality"),
            clinical_status=a.get("clinical_status") or "active") for a in allergies])


async def accessor_role(uow: UnitOfWork, principal: Principal, patient_id: str) -> AccessorRole:
    """In what capacity a non-owner reads ``patient_id``'s chart.

    Staff hold ``patients:read_any``; a doctor holds ``patients:read_treated``
    and has (had) a non-cancelled appointment with the patient.

    Raises:
        NotTreating (403): a doctor without such an appointment.
        Forbidden (403): anyone else.
    """
    if principal.has(Permission.PATIENTS_READ_ANY):
        return AccessorRole.STAFF
    if principal.has(Permission.PATIENTS_READ_TREATED):
        if await store.treats(uow.db, principal.subject, patient_id, session=uow.session):
            return AccessorRole.TREATING_DOCTOR
        raise NotTreating("you may read only the charts of patients you have appointments with")
    raise Forbidden("you may only read your own chart")


def _accessed(principal: Principal, patient_id: str, role: AccessorRole,
              purpose: Purpose, scope: str) -> events.PatientRecordAccessed:
    return events.PatientRecordAccessed(
        patient_id=patient_id, accessor_id=principal.subject, accessor_role=role.value,
        accessor_roles=sorted(principal.roles), purpose=purpose.value, scope=scope)


async def read_chart(runtime: ServiceRuntime, principal: Principal, patient_id: str,
                     purpose: Purpose | None) -> Document:
    """A chart as its patient, patient-care staff or a treating doctor may read it.

    Anyone but the patient causes ``patient.record_accessed`` (scope ``chart``),
    committed with the read.

    Raises:
        Forbidden / NotTreating (403), ProfileNotFound (404).
    """
    if patient_id == principal.subject and principal.has(Permission.PATIENTS_READ_OWN):
        return await get_own(runtime, principal)

    async def read(uow: UnitOfWork) -> Document:
        role = await accessor_role(uow, principal, patient_id)
        doc = await store.get(uow.db, patient_id, session=uow.session)
        if doc is None:
            raise ProfileNotFound(f"patient {patient_id} does not exist")
        uow.publish(_accessed(principal, patient_id, role, purpose or default_purpose(role),
                              "chart"), subject=patient_id, patientid=patient_id)
        return doc

    result: Document = await runtime.transact(read, actor=principal.actor)
    return result


async def search(runtime: ServiceRuntime, principal: Principal, query: Document,
                 cursor: str | None, limit: int, purpose: Purpose | None
                 ) -> tuple[list[Document], str | None]:
    """Staff search: one page of rows and the next cursor.

    One ``patient.record_accessed`` (scope ``search_result``) per returned row.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    chosen = purpose or default_purpose(AccessorRole.STAFF)

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        docs, next_cursor = await store.search(uow.db, uow.session, query, cursor, limit)
        for doc in docs:
            uow.publish(_accessed(principal, doc["_id"], AccessorRole.STAFF, chosen,
                                  "search_result"), subject=doc["_id"], patientid=doc["_id"])
        return docs, next_cursor

    return await runtime.transact(read, actor=principal.actor)


async def record_treatment(uow: UnitOfWork, appointment: AppointmentEvent, *,
                           active: bool) -> None:
    """Keep the doctor↔patient read model: booked adds, cancelled removes.

    ``doctor_user_id`` is optional in the contract (a doctor without a user id yet):
    then there is no one to relate.
    """
    doctor_user_id = appointment.doctor_user_id
    if doctor_user_id is None:
        return
    change = store.add_treatment if active else store.remove_treatment
    await change(uow.db, uow.session, doctor_user_id, appointment.patient_id,
                 appointment.appointment_id)
