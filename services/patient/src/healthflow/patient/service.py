"""Use cases of the patient service; routes and handlers both call these.

A change of the allergies also publishes ``patient.allergies_changed`` (the whole
list, for the prescription service's safety checks) in the same transaction.

Reads of a chart by anyone but the patient run in a transaction so that the
``patient.record_accessed`` event is committed to the outbox with the read:
no access goes unrecorded.

Staff's ``patients:read_any`` reaches the patients of the hospitals where they hold a
staff membership (issue 16, :mod:`healthflow.common.tenancy`): a patient belongs to every
hospital where they have (had) an appointment or an encounter. A patient of no hospital
yet (registered, never booked) is reached by platform roles only; staff book a first
appointment with the patient's id, which the appointment service takes without asking
this one. Another hospital's patient answers 404 exactly like a missing one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from healthflow.common.auth import Principal
from healthflow.common.care import BEFORE_ANY_EVENT, CareStatus, in_care
from healthflow.common.errors import Conflict, Forbidden
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.common.tenancy import Reach, reach_of
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.patient import domain, events, store
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
from healthflow.patient.settings import Settings

clock: Callable[[], datetime] = utcnow
"""Now, aware UTC, for judging care relationships (tests move it)."""


async def register(uow: UnitOfWork, user_id: str, *, full_name: str | None,
                   email: str | None, phone: str | None) -> bool:
    """Create the profile of a new patient account; ``False`` if it already exists."""
    if await store.get(uow.db, user_id, session=uow.session) is not None:
        return False
    now = utcnow()
    doc = new_profile(user_id, full_name=full_name, email=email, phone=phone, now=now)
    doc["name_key"] = store.name_key(doc["name"])
    doc["hospital_ids"] = await store.hospitals_known(uow.db, uow.session, user_id)
    try:
        await uow.db[store.PATIENTS].insert_one(doc, session=uow.session)
    except DuplicateKeyError:
        return False
    uow.publish(events.PatientRegistered(patient_id=user_id, registered_at=now),
                subject=user_id, patientid=user_id)
    return True


async def erase(uow: UnitOfWork, user_id: str) -> None:
    """``user.erased``: the profile forgets the person's name, birth date, gender, contact
    details and emergency contacts (:data:`~healthflow.patient.domain.ERASED_DEMOGRAPHICS`);
    ``erased_at`` is set. Idempotent; no profile, nothing to do."""
    now = utcnow()
    await uow.db[store.PATIENTS].update_one(
        {"_id": user_id},
        {"$set": domain.ERASED_DEMOGRAPHICS | {"erased_at": now, "updated_at": now}},
        session=uow.session)


async def contact_changed(uow: UnitOfWork, user_id: str, *, email: str | None,
                          phone: str | None, at: datetime) -> bool:
    """``user.contact_changed`` at ``at`` (the event's time): the profile's ``telecom`` gets
    the account's new address and number and ``patient.updated`` (``["telecom"]``) is
    published; ``False`` (nothing written) when there is no profile, it was erased, or a
    newer change is applied already."""
    now = utcnow()
    result = await uow.db[store.PATIENTS].update_one(
        {"_id": user_id, "erased_at": None,
         "$or": [{"contact_changed_at": None}, {"contact_changed_at": {"$lt": at}}]},
        {"$set": {"telecom.email": email, "telecom.phone": phone, "contact_changed_at": at,
                  "updated_at": now}, "$inc": {"version": 1}}, session=uow.session)
    if result.modified_count != 1:
        return False
    uow.publish(events.PatientUpdated(patient_id=user_id, sections=["telecom"]),
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


async def treats(uow: UnitOfWork, doctor_user_id: str, patient_id: str,
                 after_encounter: timedelta) -> bool:
    """Whether the doctor is in a care relationship with the patient now
    (:func:`healthflow.common.care.in_care` with ``after_encounter``)."""
    now = clock()
    return any(in_care(r, now, after_encounter) for r in await store.care_of(
        uow.db, doctor_user_id, patient_id, session=uow.session))


def not_found(patient_id: str) -> ProfileNotFound:
    """The one answer for a patient who is missing or out of the caller's reach."""
    return ProfileNotFound(f"patient {patient_id} does not exist")


async def accessor_role(uow: UnitOfWork, principal: Principal, patient_id: str,
                        after_encounter: timedelta) -> AccessorRole:
    """In what capacity a non-owner reads ``patient_id``'s chart.

    Staff hold ``patients:read_any`` at one of the patient's hospitals (admins and
    compliance officers everywhere); a doctor holds ``patients:read_treated`` and is in a
    care relationship with the patient: from a booking until its cancellation, or until
    ``after_encounter`` after the appointment was completed.

    Raises:
        ProfileNotFound (404): staff whose hospitals the patient does not belong to.
        NotTreating (403): a doctor without such a relationship.
        Forbidden (403): anyone else.
    """
    if principal.has(Permission.PATIENTS_READ_ANY):
        reach = await reach_of(uow.db, principal)
        known = await uow.db[store.PATIENT_HOSPITALS].find_one(
            {"_id": patient_id}, {"hospital_ids": 1}, session=uow.session)
        if reach.platform or reach.covers_any((known or {}).get("hospital_ids") or []):
            return AccessorRole.STAFF
        if not principal.has(Permission.PATIENTS_READ_TREATED):
            raise not_found(patient_id)
    if principal.has(Permission.PATIENTS_READ_TREATED):
        if await treats(uow, principal.subject, patient_id, after_encounter):
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

    settings = runtime.settings
    assert isinstance(settings, Settings)
    after = settings.care_period

    async def read(uow: UnitOfWork) -> Document:
        role = await accessor_role(uow, principal, patient_id, after)
        doc = await store.get(uow.db, patient_id, session=uow.session)
        if doc is None:
            raise not_found(patient_id)
        uow.publish(_accessed(principal, patient_id, role, purpose or default_purpose(role),
                              "chart"), subject=patient_id, patientid=patient_id)
        return doc

    result: Document = await runtime.transact(read, actor=principal.actor)
    return result


async def search(runtime: ServiceRuntime, principal: Principal, query: Document,
                 cursor: str | None, limit: int, purpose: Purpose | None
                 ) -> tuple[list[Document], str | None]:
    """Staff search: one page of rows and the next cursor, limited to the patients of the
    caller's hospitals (every patient for platform roles).

    One ``patient.record_accessed`` (scope ``search_result``) per returned row.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    chosen = purpose or default_purpose(AccessorRole.STAFF)

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        scoped = _within(query, await reach_of(uow.db, principal))
        docs, next_cursor = await store.search(uow.db, uow.session, scoped, cursor, limit)
        for doc in docs:
            uow.publish(_accessed(principal, doc["_id"], AccessorRole.STAFF, chosen,
                                  "search_result"), subject=doc["_id"], patientid=doc["_id"])
        return docs, next_cursor

    return await runtime.transact(read, actor=principal.actor)


def _within(query: Document, reach: Reach) -> Document:
    """``query`` limited to the patients of ``reach``'s hospitals."""
    if reach.platform:
        return query
    return {**query, "hospital_ids": {"$in": sorted(reach.member_of)}}


async def belongs_to(uow: UnitOfWork, patient_id: str, hospital_ids: list[str]) -> None:
    """The patient belongs to ``hospital_ids`` too (an appointment or encounter there)."""
    await store.attach_hospitals(uow.db, uow.session, patient_id, hospital_ids)


def _new_care(appointment: AppointmentEvent, at: datetime,
              status: CareStatus = CareStatus.ACTIVE, *, finished: bool = False) -> Document:
    """A relationship first heard of at ``at`` (cancelled at once when ``INACTIVE``)."""
    return {"_id": appointment.appointment_id, "doctor_user_id": appointment.doctor_user_id,
            "patient_id": appointment.patient_id, "status": status.value,
            "period": {"start": at, "end": at if status is CareStatus.INACTIVE else None},
            "encounter_finished_at": at if finished else None,
            "planned_end": appointment.end, "as_of": at}


async def appointment_booked(uow: UnitOfWork, appointment: AppointmentEvent,
                             at: datetime) -> None:
    """The care relationship the booking makes, from ``at`` (the event's time).

    Appointment events carry no revision: they are ordered by their CloudEvents
    ``time``. A cancelled relationship stays ended (a booking delivered late or
    again grants nothing); an older event than the newest applied changes nothing.
    ``doctor_user_id`` is optional in the contract: without it there is no one to relate.
    """
    if appointment.doctor_user_id is None:
        return
    current = await store.get_care(uow.db, uow.session, appointment.appointment_id)
    if current is None:
        await store.insert_care(uow.db, uow.session, _new_care(appointment, at))
    elif current["status"] == CareStatus.ACTIVE and current["as_of"] < at:
        await store.update_care(uow.db, uow.session, appointment.appointment_id,
                                {"as_of": at, "planned_end": appointment.end})


async def appointment_rescheduled(uow: UnitOfWork, appointment: AppointmentEvent,
                                  at: datetime) -> None:
    """An active relationship follows the appointment's new planned end (an unfinished
    one lasts ``care_after_encounter_days`` after it); older events change nothing."""
    current = await store.get_care(uow.db, uow.session, appointment.appointment_id)
    if current is not None and current["status"] == CareStatus.ACTIVE \
            and current["as_of"] < at:
        await store.update_care(uow.db, uow.session, appointment.appointment_id,
                                {"as_of": at, "planned_end": appointment.end})


async def appointment_cancelled(uow: UnitOfWork, appointment: AppointmentEvent,
                                at: datetime) -> None:
    """The appointment's relationship ends at ``at``, for good (cancelled, or a no-show)."""
    if appointment.doctor_user_id is None:
        return
    current = await store.get_care(uow.db, uow.session, appointment.appointment_id)
    if current is None:
        await store.insert_care(uow.db, uow.session,
                                _new_care(appointment, at, CareStatus.INACTIVE))
    elif current["status"] == CareStatus.ACTIVE:
        await store.update_care(uow.db, uow.session, appointment.appointment_id, {
            "status": CareStatus.INACTIVE.value, "period.end": at,
            "as_of": max(at, current["as_of"])})


async def appointment_completed(uow: UnitOfWork, appointment: AppointmentEvent,
                                at: datetime) -> None:
    """The consultation took place at ``at``: the relationship lasts until ``at`` plus
    ``care_after_encounter_days`` (made now if the booking has not arrived yet)."""
    if appointment.doctor_user_id is None:
        return
    current = await store.get_care(uow.db, uow.session, appointment.appointment_id)
    if current is None:
        await store.insert_care(uow.db, uow.session, _new_care(appointment, at, finished=True))
    elif current["status"] == CareStatus.ACTIVE:
        await store.update_care(uow.db, uow.session, appointment.appointment_id, {
            "encounter_finished_at": at, "as_of": max(at, current["as_of"])})


LEGACY_TREATMENTS = "treatments"
"""The read model before ``care_team``: ``{_id: "<doctor>:<patient>", doctor_user_id,
patient_id, appointments: [ids not cancelled]}``."""


async def adopt_legacy(runtime: ServiceRuntime) -> None:
    """Carry the relationships of the older ``treatments`` read model into ``care_team``
    at start (once: the old collection is dropped after), so a deploy ends nobody's
    access. The old model kept neither booking nor completion times: each listed
    appointment becomes an ``active`` relationship treated as finished now, so it lasts
    ``care_after_encounter_days`` from the move, unless a later ``appointment.completed``
    (a consultation still ahead) or a cancellation says otherwise. A relationship that
    exists already is left alone, so a restart during the move repeats nothing.
    """
    db, at = runtime.db, clock()
    async for old in db[LEGACY_TREATMENTS].find({}):
        for appointment_id in old.get("appointments", []):
            if await db[store.CARE].find_one({"_id": appointment_id}) is not None:
                continue
            with contextlib.suppress(DuplicateKeyError):
                await db[store.CARE].insert_one({
                    "_id": appointment_id, "doctor_user_id": old["doctor_user_id"],
                    "patient_id": old["patient_id"], "status": CareStatus.ACTIVE.value,
                    "period": {"start": at, "end": None}, "encounter_finished_at": at,
                    "as_of": BEFORE_ANY_EVENT})
    await db.drop_collection(LEGACY_TREATMENTS)
