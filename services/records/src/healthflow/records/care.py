"""Care relationships (FHIR R4 ``CareTeam``: a doctor and a patient, a status, a period)
and break-the-glass access.

A doctor's care relationship with a patient rests on one appointment or one walk-in
encounter (a ``care_team`` document each, :mod:`.store`):

* it starts (``period.start``) when the appointment is booked (the event's time), or
  when a walk-in encounter opens; ``status`` ``active``;
* a cancellation (or a no-show) ends it at once (``inactive``, ``period.end`` the
  event's time) and for good: no later or redelivered ``appointment.booked`` revives it;
* once its encounter finishes (appointment completed, video consultation ended,
  or finished by the doctor) it lasts until that finish plus
  ``care_after_encounter_days`` (a records setting, days of 24 h, 90 by default);
* one whose encounter never finishes lasts that period after the later of the
  appointment's planned end (following reschedules) and its newest event
  (:func:`healthflow.common.care.care_ends`), so an abandoned booking or an encounter
  left open does not grant access for ever.

Whether a relationship grants access is judged at read time with :func:`now`
(:func:`healthflow.records.domain.in_care`), so it ends without any event.

Order: :class:`~healthflow.contracts.appointment.AppointmentEvent` carries no
revision or version, so appointment events are ordered by their CloudEvents
``time`` (when the appointment service made the change, aware UTC): a booking
older than the newest event applied (``as_of``) changes nothing, and a
cancellation is final whatever order it arrives in.

Break-the-glass (:func:`break_the_glass`): a doctor (``records:read_treated``)
without a relationship states a reason (10–500 characters, kept here only) and may
read the record for ``break_glass_minutes`` (60 by default); the grant publishes
``record.emergency_access_granted`` (for the patient's feed and the audit log's
review) and every read under it a ``record.accessed`` marked ``break_the_glass``
with purpose ``emergency`` and the grant's id. A grant never allows writing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from healthflow.common import careteam
from healthflow.common.auth import Principal
from healthflow.common.care import BEFORE_ANY_EVENT
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.records import events, store
from healthflow.records.domain import OwnRecord, UnknownPatient
from healthflow.records.settings import settings_of

log = logging.getLogger(__name__)

LEGACY_CARE = "care"
"""The read model before ``care_team``: ``{_id: "<doctor>:<patient>", doctor_user_id,
patient_id, appointments: [ids not cancelled], encounters: [ids the doctor conducted]}``."""

clock: Callable[[], datetime] = utcnow
"""Now, aware UTC (tests move it; everything here reads it through :func:`now`)."""


def now() -> datetime:
    return clock()


async def treats(uow: UnitOfWork, doctor_user_id: str, patient_id: str) -> bool:
    """Whether the doctor is in a care relationship with the patient now."""
    return await careteam.treats(uow, doctor_user_id, patient_id, now())


async def break_the_glass(runtime: ServiceRuntime, principal: Principal, patient_id: str,
                          reason: str) -> Document:
    """A time-boxed emergency grant to read the patient's record, for ``principal`` (a
    doctor); ``record.emergency_access_granted``. The grant's document:
    ``{_id, doctor_user_id, patient_id, reason, granted_at, expires_at}`` (aware UTC).

    Raises:
        OwnRecord (403): the doctor is the patient; UnknownPatient (422): no such patient
        has registered.
    """
    if principal.subject == patient_id:
        raise OwnRecord("no one breaks the glass on their own record")
    lasts = timedelta(minutes=settings_of(runtime).break_glass_minutes)

    async def write(uow: UnitOfWork) -> Document:
        if not await store.patient_exists(uow, patient_id):
            raise UnknownPatient(f"no patient {patient_id} is known to the records")
        at, grant_id = now(), str(uuid.uuid4())
        grant = {"_id": grant_id, "doctor_user_id": principal.subject,
                 "patient_id": patient_id, "reason": reason, "granted_at": at,
                 "expires_at": at + lasts}
        await store.insert_grant(uow, grant)
        uow.publish(events.EmergencyAccessGranted(
            grant_id=grant_id, patient_id=patient_id, accessor_id=principal.subject,
            accessor_roles=sorted(principal.roles), granted_at=at, expires_at=at + lasts),
            subject=f"patient/{patient_id}", patientid=patient_id)
        return grant

    return await runtime.transact(write, actor=principal.actor)


async def adopt_legacy(runtime: ServiceRuntime) -> None:
    """Carry the relationships of the older ``care`` read model into ``care_team`` at
    start (once: the old collection is dropped after), so a deploy ends nobody's access.

    Each listed appointment becomes an ``active`` relationship from now (its booking time
    and planned end were not kept, so unless a later event says otherwise it lasts
    ``care_after_encounter_days`` from the move: the old model never dropped no-shows)
    and each conducted encounter one resting on it, ended its
    ``care_after_encounter_days`` after the encounter's ``period.end`` when finished
    (cancelled encounters grant nothing). A relationship that exists already is left
    alone, so a restart during the move repeats nothing.
    """
    db, at, made = runtime.db, now(), 0
    async for old in db[LEGACY_CARE].find({}):
        doctor, patient = old["doctor_user_id"], old["patient_id"]
        for appointment_id in old.get("appointments", []):
            doc = careteam.new_relationship(careteam.appointment_key(appointment_id), doctor,
                                           patient, at, appointment_id=appointment_id)
            made += await careteam.adopt(db[store.CARE], doc | {"as_of": BEFORE_ANY_EVENT})
        for encounter_id in old.get("encounters", []):
            encounter = await db[store.ENCOUNTERS].find_one({"_id": encounter_id})
            if encounter is None or encounter["status"] == "cancelled":
                continue
            appointment_id = encounter.get("appointment_id")
            care_id = (careteam.appointment_key(appointment_id) if appointment_id
                       else f"encounter:{encounter_id}")
            doc = careteam.new_relationship(care_id, doctor, patient, at,
                                            appointment_id=appointment_id,
                                            encounter_id=encounter_id) | {
                "as_of": BEFORE_ANY_EVENT}
            if encounter["status"] == "finished":
                doc["encounter_finished_at"] = (encounter.get("period") or {}).get("end") or at
            made += await careteam.adopt(db[store.CARE], doc)
    await db.drop_collection(LEGACY_CARE)
    if made:
        log.info("adopted care relationships of the older read model", extra={"made": made})
