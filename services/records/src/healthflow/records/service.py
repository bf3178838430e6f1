"""Use cases of the records service: access, encounters.

Routes and handlers call these; each runs in one ``runtime.transact`` with the
events it causes. Record entries are in :mod:`healthflow.records.entries`, plans and
procedures in :mod:`.plans`, documents in :mod:`.documents`, the FHIR export in
:mod:`.export`.

Access to a patient's record (:func:`accessor`):

* the patient reads their own (``records:read_own``);
* a doctor reads (``records:read_treated``) and writes (``records:write_treated``)
  while in a care relationship (:mod:`.care`: from the booking until a cancellation,
  or until ``care_after_encounter_days`` after the encounter finished);
* a doctor without one reads (never writes) under a break-the-glass grant
  (:func:`healthflow.records.care.break_the_glass`) until it expires;
* clinical staff read (``records:read_any``) the records of their hospitals' patients
  (:mod:`.reach`; issue 16); others' answer as missing ones do.

Every read by someone other than the patient publishes ``record.accessed``,
committed with the read: no access goes unrecorded.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from healthflow.common import careteam
from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict, Forbidden, UnprocessableContent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.contracts.hospital import HospitalSnapshot
from healthflow.contracts.teleconference import TeleconsultEnded, TeleconsultStarted
from healthflow.records import care, coding, events, reach, store
from healthflow.records.domain import (
    Access,
    AccessorRole,
    EncounterNotFound,
    EncounterOpening,
    EncounterStatus,
    NotTreating,
    OwnRecord,
    RecordNotFound,
    UnknownHospital,
    UnknownPatient,
    class_for_mode,
    new_encounter,
    transition,
)
from healthflow.records.schemas import EncounterIn

# ----------------------------------------------------------------------------- access


async def accessor(uow: UnitOfWork, principal: Principal, patient_id: str, *,
                   write: bool = False) -> Access | None:
    """In what capacity ``principal`` reads (or, ``write``, writes) ``patient_id``'s record.

    ``None``: the patient themselves (reading). A doctor without a care relationship
    reads under their live break-the-glass grant (``break_the_glass`` and its id).

    Raises:
        OwnRecord (403): writing into one's own record (a doctor who is also a patient).
        NotTreating (403): a doctor without a care relationship (or, reading, a live
            grant) with the patient.
        RecordNotFound (404): staff (``records:read_any``) of none of the patient's
            hospitals: as for a patient who does not exist.
        Forbidden (403): anyone else.
    """
    if principal.subject == patient_id:
        if write:
            raise OwnRecord("no one writes into their own record")
        if principal.has(Permission.RECORDS_READ_OWN):
            return None
    wanted = Permission.RECORDS_WRITE_TREATED if write else Permission.RECORDS_READ_TREATED
    if principal.has(wanted):
        if await care.treats(uow, principal.subject, patient_id):
            return Access(AccessorRole.TREATING_DOCTOR)
        grant = None if write else await store.live_grant(uow, principal.subject, patient_id,
                                                          care.now())
        if grant is not None:
            return Access(AccessorRole.BREAK_THE_GLASS, grant["_id"])
        if write or not principal.has(Permission.RECORDS_READ_ANY):
            raise NotTreating("you may only see and write the records of your own patients "
                              "(in an emergency: POST …/records/patients/{id}/break-the-glass)")
    if not write and principal.has(Permission.RECORDS_READ_ANY):
        if not await reach.reaches_patient(uow, principal, patient_id):
            raise RecordNotFound(f"no record of patient {patient_id}")
        return Access(AccessorRole.STAFF)
    raise Forbidden("you may only read your own record" if not write
                    else "only a treating doctor writes a record")


def another_patients(principal: Principal, patient_id: str) -> bool:
    """Whether a patient asks for another patient's data (answered 404: existence is hidden).

    Only for callers whose sole way in is ``records:read_own``: a doctor or
    staff member who is also a patient is judged by :func:`accessor` instead.
    """
    return (principal.has(Permission.RECORDS_READ_OWN) and principal.subject != patient_id
            and not principal.has(Permission.RECORDS_READ_TREATED)
            and not principal.has(Permission.RECORDS_READ_ANY))


async def hidden(uow: UnitOfWork, principal: Principal, patient_id: str) -> bool:
    """Whether a resource of ``patient_id`` is answered as missing (404) to ``principal``:
    a patient asking for another's (:func:`another_patients`), or staff whose hospitals
    the patient does not belong to (:func:`.reach.staff_out_of_reach`)."""
    return another_patients(principal, patient_id) or await reach.staff_out_of_reach(
        uow, principal, patient_id)


def record_access(uow: UnitOfWork, principal: Principal, patient_id: str,
                  access: Access | None, scope: str) -> None:
    """Publish ``record.accessed`` unless the patient reads their own record; a
    break-the-glass read names its grant, with purpose ``emergency``."""
    if access is None:
        return
    glass = access.role is AccessorRole.BREAK_THE_GLASS
    uow.publish(events.RecordAccessed(
        patient_id=patient_id, accessor_id=principal.subject, accessor_role=access.role.value,
        accessor_roles=sorted(principal.roles), scope=scope,
        purpose="emergency" if glass else None, grant_id=access.grant_id),
        subject=f"patient/{patient_id}", patientid=patient_id)


async def load_encounter(uow: UnitOfWork, encounter_id: str) -> Document:
    """Raises EncounterNotFound (404)."""
    doc = await store.get_encounter(uow.db, encounter_id, session=uow.session)
    if doc is None:
        raise EncounterNotFound(f"no encounter {encounter_id}")
    return doc


# ----------------------------------------------------------------------------- encounters


def _payload(doc: Document) -> dict[str, Any]:
    return {"encounter_id": doc["_id"], "patient_id": doc["patient_id"],
            "practitioner_id": doc["practitioner_id"], "appointment_id": doc["appointment_id"],
            "encounter_class": doc["class"], "hospital_id": doc.get("hospital_id")}


def _publish_started(uow: UnitOfWork, doc: Document, at: datetime) -> None:
    uow.publish(events.EncounterStarted(**_payload(doc), started_at=at),
                subject=f"encounter/{doc['_id']}", patientid=doc["patient_id"])


def _practitioner(principal: Principal, body: EncounterIn) -> str:
    """Whose encounter a walk-in is: the named doctor, or the calling doctor.

    Raises:
        UnprocessableContent (422): staff named no doctor.
        Forbidden (403): a doctor without ``encounters:open_any`` named another one.
        OwnRecord (403): the doctor would be the patient (a self-granted care relationship).
    """
    may_name = principal.has(Permission.ENCOUNTERS_OPEN_ANY)
    if body.practitioner_id is None:
        if not principal.has(Permission.RECORDS_WRITE_TREATED):
            raise UnprocessableContent("name the doctor of the encounter (practitioner_id)")
        practitioner_id = principal.subject
    elif body.practitioner_id != principal.subject and not may_name:
        raise Forbidden("a doctor opens encounters of their own")
    else:
        practitioner_id = body.practitioner_id
    if practitioner_id == body.patient_id:
        raise OwnRecord("a doctor cannot be their own patient's doctor")
    return practitioner_id


async def open_encounter(runtime: ServiceRuntime, principal: Principal, body: EncounterIn
                         ) -> Document:
    """A walk-in, virtual or emergency encounter without an appointment, in progress now.

    A doctor opens one only for a patient they already treat (a booking or an
    earlier encounter): opening one is not a way into a stranger's record. A walk-in
    is opened by staff holding ``encounters:open_any`` (reception, nursing), who name
    the doctor; that doctor gains the care relationship through it (the
    ``encounter.started`` event records who opened it, for the audit log).

    ``hospital_id``, when given, must be a hospital whose newest ``hospital.*`` event
    says ``verified``; staff (``encounters:open_any``) must work there
    (:func:`.reach.ensure_opens_at`: issue 16), and the patient then belongs to it.

    Raises:
        UnknownPatient (422): no such patient has registered; UnknownHospital (422):
        ``hospital_id`` is not a verified hospital known to the records; NotTreating
        (403): a doctor without ``encounters:open_any`` does not treat the patient;
        Forbidden (403): staff of another hospital; see :func:`_practitioner`.
    """
    practitioner_id = _practitioner(principal, body)

    async def write(uow: UnitOfWork) -> Document:
        if not await store.patient_exists(uow, body.patient_id):
            raise UnknownPatient(f"no patient {body.patient_id} is known to the records")
        if body.hospital_id is not None and not await store.hospital_verified(
                uow, body.hospital_id):
            raise UnknownHospital(f"no verified hospital {body.hospital_id} is known to "
                                  "the records")
        if principal.has(Permission.ENCOUNTERS_OPEN_ANY):
            await reach.ensure_opens_at(uow, principal, body.hospital_id)
        if not principal.has(Permission.ENCOUNTERS_OPEN_ANY) and not await care.treats(
                uow, practitioner_id, body.patient_id):
            raise NotTreating("a doctor opens encounters only for their own patients; "
                              "reception or nursing opens a walk-in and names the doctor")
        now = utcnow()
        doc = new_encounter(EncounterOpening(
            encounter_id=str(uuid.uuid4()), patient_id=body.patient_id,
            practitioner_id=practitioner_id, encounter_class=body.encounter_class,
            status=EncounterStatus.IN_PROGRESS, opened_by=principal.subject, now=now,
            reason=body.reason, hospital_id=body.hospital_id))
        await store.insert_encounter(uow, doc)
        if body.hospital_id is not None:
            await reach.belongs_to(uow, body.patient_id, [body.hospital_id])
        await careteam.encounter_started(uow, practitioner_id, body.patient_id, doc["_id"], now)
        _publish_started(uow, doc, now)
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def finish_encounter(runtime: ServiceRuntime, principal: Principal, encounter_id: str
                           ) -> Document:
    """End an in-progress encounter now (``period.end``); ``encounter.finished`` and
    ``encounter.coded`` (:mod:`.coding`).

    By a treating doctor, or staff holding ``encounters:open_any`` at the encounter's
    hospital (:func:`.reach.encounter_within`).

    Raises:
        EncounterNotFound (404; also staff of another hospital), NotTreating / Forbidden (403),
        EncounterStateConflict (409): not in progress; Conflict (409): concurrent change.
    """

    async def write(uow: UnitOfWork) -> Document:
        doc = await load_encounter(uow, encounter_id)
        if not principal.has(Permission.ENCOUNTERS_OPEN_ANY):
            await accessor(uow, principal, doc["patient_id"], write=True)
        elif not await reach.encounter_within(uow, principal, doc):
            raise EncounterNotFound(f"no encounter {encounter_id}")
        return await _finish(uow, doc, utcnow())

    return await runtime.transact(write, actor=principal.actor)


async def _finish(uow: UnitOfWork, doc: Document, at: datetime) -> Document:
    fields = transition(doc, EncounterStatus.FINISHED, at)
    if not await store.update_encounter(uow, doc, fields):
        raise Conflict("the encounter changed concurrently; reload and retry")
    after = await load_encounter(uow, doc["_id"])
    await careteam.encounter_finished(uow, doc["_id"], after["period"]["end"])
    uow.publish(events.EncounterFinished(**_payload(after), started_at=after["period"]["start"],
                                         finished_at=after["period"]["end"]),
                subject=f"encounter/{doc['_id']}", patientid=doc["patient_id"])
    await coding.announce(uow, after)
    return after


async def read_encounter(runtime: ServiceRuntime, principal: Principal, encounter_id: str
                         ) -> Document:
    """An encounter, for its patient, a treating doctor or clinical staff.

    Raises:
        EncounterNotFound (404; also for a patient asking for another's), NotTreating /
        Forbidden (403).
    """

    async def read(uow: UnitOfWork) -> Document:
        doc = await load_encounter(uow, encounter_id)
        if await hidden(uow, principal, doc["patient_id"]):
            raise EncounterNotFound(f"no encounter {encounter_id}")
        record_access(uow, principal, doc["patient_id"],
                      await accessor(uow, principal, doc["patient_id"]), "encounter")
        return doc

    return await runtime.transact(read, actor=principal.actor)


async def list_encounters(runtime: ServiceRuntime, principal: Principal, patient_id: str,
                          *, cursor: str | None, limit: int
                          ) -> tuple[list[Document], str | None]:
    """One page of the patient's encounters, oldest first, and the next cursor.

    Raises:
        NotTreating / Forbidden (403); BadRequest (400): a cursor this API did not issue.
    """

    async def read(uow: UnitOfWork) -> tuple[list[Document], str | None]:
        record_access(uow, principal, patient_id,
                      await accessor(uow, principal, patient_id), "encounter")
        return await store.encounters_page(uow.db, patient_id, cursor=cursor, limit=limit,
                                           session=uow.session)

    return await runtime.transact(read, actor=principal.actor)


# ----------------------------------------------------------------------------- from events


async def hospital_changed(uow: UnitOfWork, data: HospitalSnapshot) -> None:
    """Keep the hospital's ``status`` (``pending`` | ``verified`` | ``rejected``) from
    ``hospital.*`` (newest ``version`` wins), so a walk-in names only a verified one."""
    await store.put_hospital(uow, data.hospital_id, data.version, data.status)


async def register_patient(uow: UnitOfWork, patient_id: str, registered_at: datetime) -> None:
    """Remember that ``patient_id`` exists (``patient.registered``); idempotent."""
    await store.add_patient(uow, patient_id, registered_at)


def _opening(appointment: AppointmentEvent, status: EncounterStatus, at: datetime
             ) -> EncounterOpening:
    return EncounterOpening(
        encounter_id=str(uuid.uuid4()), patient_id=appointment.patient_id,
        practitioner_id=appointment.doctor_user_id or appointment.doctor_id,
        encounter_class=class_for_mode(appointment.mode), status=status,
        opened_by="appointment", now=at, appointment_id=appointment.appointment_id,
        planned=(appointment.start, appointment.end),
        hospital_id=appointment.location_id if appointment.mode != "online" else None)


async def _insert_for(uow: UnitOfWork, appointment: AppointmentEvent, status: EncounterStatus,
                      at: datetime) -> Document | None:
    """A new encounter of the appointment; ``None`` if one exists already (redelivery)."""
    doc = new_encounter(_opening(appointment, status, at))
    try:
        await store.insert_encounter(uow, doc)
    except DuplicateKeyError:
        return None
    return doc


async def appointment_booked(uow: UnitOfWork, appointment: AppointmentEvent,
                             at: datetime) -> None:
    """A ``planned`` encounter for the appointment (unless it has one) and a care relationship.

    Delivery is unordered: a check-in or cancellation that arrived first has
    already created the encounter, and nothing is planned again (nor, after a
    cancellation, is the care relationship restored: :mod:`.care`).
    """
    await careteam.appointment_booked(uow, appointment, at)
    existing = await store.encounter_of_appointment(uow, appointment.appointment_id)
    if existing is None:
        await _insert_for(uow, appointment, EncounterStatus.PLANNED, at)


async def appointment_rescheduled(uow: UnitOfWork, appointment: AppointmentEvent,
                                  at: datetime) -> None:
    """A planned encounter, and the care relationship, follow the appointment to the new
    ``start``–``end`` (``at``: the event's time)."""
    await careteam.appointment_rescheduled(uow, appointment, at)
    doc = await store.encounter_of_appointment(uow, appointment.appointment_id)
    if doc is not None and doc["status"] == EncounterStatus.PLANNED:
        await store.update_encounter(uow, doc, {
            "planned": {"start": appointment.start, "end": appointment.end}})


async def appointment_cancelled(uow: UnitOfWork, appointment: AppointmentEvent,
                                at: datetime) -> None:
    """The planned encounter is ``cancelled`` (kept, so a late ``booked`` plans nothing),
    and the appointment no longer makes a care relationship."""
    await careteam.appointment_ended(uow, appointment, at)
    doc = await store.encounter_of_appointment(uow, appointment.appointment_id)
    if doc is None:
        await _insert_for(uow, appointment, EncounterStatus.CANCELLED, at)
    elif doc["status"] == EncounterStatus.PLANNED:
        await store.update_encounter(uow, doc, transition(doc, EncounterStatus.CANCELLED, at))


async def appointment_checked_in(uow: UnitOfWork, appointment: AppointmentEvent,
                                 at: datetime) -> None:
    """The appointment's encounter starts at ``at`` (the check-in); ``encounter.started``.

    Idempotent: an encounter already in progress or finished is left alone.
    """
    doc = await store.encounter_of_appointment(uow, appointment.appointment_id)
    if doc is None:
        doc = await _insert_for(uow, appointment, EncounterStatus.IN_PROGRESS, at)
        if doc is None:
            return
    elif doc["status"] == EncounterStatus.PLANNED:
        await store.update_encounter(uow, doc, transition(doc, EncounterStatus.IN_PROGRESS, at))
    else:
        return
    if appointment.doctor_user_id:
        await careteam.encounter_started(uow, appointment.doctor_user_id, appointment.patient_id,
                                     doc["_id"], at, appointment.appointment_id)
    _publish_started(uow, await load_encounter(uow, doc["_id"]), at)


class CheckInNotYetApplied(Exception):
    """``appointment.completed`` came before its ``checked_in``: retried with back-off."""


async def appointment_completed(uow: UnitOfWork, appointment: AppointmentEvent,
                                at: datetime) -> None:
    """The appointment's encounter finishes at ``at``; ``encounter.finished``.

    An encounter already finished (by the doctor, or a redelivery) is left alone.

    Raises:
        CheckInNotYetApplied: the encounter has not started here yet (delivery is
            unordered; the appointment service completes only checked-in ones), so
            the consumer retries it later.
    """
    doc = await store.encounter_of_appointment(uow, appointment.appointment_id)
    if doc is None or doc["status"] == EncounterStatus.PLANNED:
        raise CheckInNotYetApplied(f"appointment {appointment.appointment_id} has no "
                                   "started encounter yet")
    if doc["status"] == EncounterStatus.IN_PROGRESS:
        await _finish(uow, doc, at)


class BookingNotYetApplied(Exception):
    """A teleconsultation event came before its ``appointment.booked``: retried with
    back-off."""


async def teleconsult_started(uow: UnitOfWork, consult: TeleconsultStarted) -> None:
    """The online appointment's encounter starts when its doctor admits the patient to the
    video consultation (``consult.started_at``); ``encounter.started``. Idempotent.

    Raises:
        BookingNotYetApplied: the appointment's planned encounter is not here yet.
    """
    doc = await store.encounter_of_appointment(uow, consult.appointment_id)
    if doc is None:
        raise BookingNotYetApplied(f"appointment {consult.appointment_id} has no encounter "
                                   "yet")
    if doc["status"] != EncounterStatus.PLANNED:
        return
    at = consult.started_at
    await store.update_encounter(uow, doc, transition(doc, EncounterStatus.IN_PROGRESS, at))
    await careteam.encounter_started(uow, consult.doctor_user_id, consult.patient_id, doc["_id"],
                                 at, consult.appointment_id)
    _publish_started(uow, await load_encounter(uow, doc["_id"]), at)


async def teleconsult_ended(uow: UnitOfWork, consult: TeleconsultEnded) -> None:
    """The video consultation ended: its encounter finishes at ``consult.ended_at``;
    ``encounter.finished``. One that never started (nobody was admitted) stays planned
    for the appointment service to settle; a finished one is left alone.

    Raises:
        BookingNotYetApplied: the consultation had started but its encounter has not
            (events arrive in any order).
    """
    if not consult.started:
        return
    doc = await store.encounter_of_appointment(uow, consult.appointment_id)
    if doc is None or doc["status"] == EncounterStatus.PLANNED:
        raise BookingNotYetApplied(f"the encounter of {consult.appointment_id} has not "
                                   "started here yet")
    if doc["status"] == EncounterStatus.IN_PROGRESS:
        await _finish(uow, doc, consult.ended_at)
