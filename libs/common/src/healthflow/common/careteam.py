"""The care-team read model: the ``care_team`` collection a service keeps from
appointment and encounter events, judged by the rule in :mod:`healthflow.common.care`.

Shared by the services that let a doctor read a chart while in a care relationship
(records, xray). One document per appointment (``_id`` ``appointment:<id>``) or per
encounter without one (a walk-in: ``encounter:<id>``)::

    {_id, doctor_user_id, patient_id, appointment_id | None, encounter_id | None,
     status: active | inactive, period: {start, end | None}, planned_end | None,
     encounter_finished_at | None, as_of}

All times aware UTC. ``at`` is the event's CloudEvents ``time``: appointment events
carry no revision, so an event older than the newest applied (``as_of``) changes
nothing, and a cancellation (or no-show) ends a relationship for good whatever order
it arrives in. Every function runs inside the caller's transaction (``uow``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from healthflow.common.care import BEFORE_ANY_EVENT, CareSettings, CareStatus, in_care
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document

CARE_TEAM = "care_team"
INDEXES = [
    IndexModel([("doctor_user_id", ASCENDING), ("patient_id", ASCENDING)], name="pair"),
    IndexModel([("encounter_id", ASCENDING)], name="encounter"),
]


class Appointment(Protocol):
    """What the model reads of an appointment event
    (:class:`healthflow.contracts.appointment.AppointmentEvent` has it)."""

    @property
    def appointment_id(self) -> str: ...

    @property
    def patient_id(self) -> str: ...

    @property
    def doctor_user_id(self) -> str | None: ...

    @property
    def end(self) -> datetime: ...


def appointment_key(appointment_id: str) -> str:
    return f"appointment:{appointment_id}"


def new_relationship(care_id: str, doctor_user_id: str, patient_id: str, at: datetime, *,
                     appointment_id: str | None = None, encounter_id: str | None = None,
                     status: CareStatus = CareStatus.ACTIVE,
                     planned_end: datetime | None = None) -> Document:
    """A relationship first heard of at ``at`` (ended at once when ``INACTIVE``)."""
    return {"_id": care_id, "doctor_user_id": doctor_user_id, "patient_id": patient_id,
            "appointment_id": appointment_id, "encounter_id": encounter_id,
            "status": status.value,
            "period": {"start": at, "end": at if status is CareStatus.INACTIVE else None},
            "encounter_finished_at": None, "planned_end": planned_end, "as_of": at}


async def _get(uow: UnitOfWork, care_id: str) -> Document | None:
    return await uow.db[CARE_TEAM].find_one({"_id": care_id}, session=uow.session)


async def _insert(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[CARE_TEAM].insert_one(doc, session=uow.session)


async def _set(uow: UnitOfWork, care_id: str, fields: Document) -> None:
    await uow.db[CARE_TEAM].update_one({"_id": care_id}, {"$set": fields},
                                       session=uow.session)


def _of_appointment(appointment: Appointment, doctor_user_id: str, at: datetime,
                    status: CareStatus) -> Document:
    return new_relationship(appointment_key(appointment.appointment_id), doctor_user_id,
                            appointment.patient_id, at, status=status,
                            appointment_id=appointment.appointment_id,
                            planned_end=appointment.end)


async def appointment_booked(uow: UnitOfWork, appointment: Appointment, at: datetime) -> None:
    """The relationship the booking makes, from ``at``; nothing if it was cancelled or a
    newer event of the appointment was applied already."""
    if not appointment.doctor_user_id:
        return
    care_id = appointment_key(appointment.appointment_id)
    current = await _get(uow, care_id)
    if current is None:
        await _insert(uow, _of_appointment(appointment, appointment.doctor_user_id, at,
                                           CareStatus.ACTIVE))
    elif current["status"] == CareStatus.ACTIVE and current["as_of"] < at:
        await _set(uow, care_id, {"as_of": at, "planned_end": appointment.end})


async def appointment_rescheduled(uow: UnitOfWork, appointment: Appointment,
                                  at: datetime) -> None:
    """An active relationship follows the appointment's new planned end; an older event
    than the newest applied changes nothing."""
    current = await _get(uow, appointment_key(appointment.appointment_id))
    if current is not None and current["status"] == CareStatus.ACTIVE \
            and current["as_of"] < at:
        await _set(uow, current["_id"], {"as_of": at, "planned_end": appointment.end})


async def appointment_ended(uow: UnitOfWork, appointment: Appointment, at: datetime) -> None:
    """Cancelled, or a no-show: the appointment's relationship ends at ``at``, for good
    (kept ``inactive``, so a booking delivered later or again grants nothing)."""
    if not appointment.doctor_user_id:
        return
    care_id = appointment_key(appointment.appointment_id)
    current = await _get(uow, care_id)
    if current is None:
        await _insert(uow, _of_appointment(appointment, appointment.doctor_user_id, at,
                                           CareStatus.INACTIVE))
    elif current["status"] == CareStatus.ACTIVE:
        await _set(uow, care_id, {"status": CareStatus.INACTIVE.value, "period.end": at,
                                  "as_of": max(at, current["as_of"])})


async def encounter_started(uow: UnitOfWork, doctor_user_id: str, patient_id: str,
                            encounter_id: str, at: datetime,
                            appointment_id: str | None = None) -> None:
    """The doctor conducts the encounter: the appointment's relationship rests on it (made
    now if the booking has not arrived; a cancelled one stays ended), or, for a walk-in,
    a relationship of its own starts at ``at``."""
    care_id = appointment_key(appointment_id) if appointment_id else f"encounter:{encounter_id}"
    current = await _get(uow, care_id)
    if current is None:
        await _insert(uow, new_relationship(care_id, doctor_user_id, patient_id, at,
                                            appointment_id=appointment_id,
                                            encounter_id=encounter_id))
    elif current["status"] == CareStatus.ACTIVE:
        await _set(uow, care_id, {"encounter_id": encounter_id,
                                  "as_of": max(at, current["as_of"])})


async def encounter_finished(uow: UnitOfWork, encounter_id: str, at: datetime) -> None:
    """The relationships resting on the encounter last until ``at`` + the period."""
    await uow.db[CARE_TEAM].update_many({"encounter_id": encounter_id},
                                        {"$set": {"encounter_finished_at": at}},
                                        session=uow.session)


def care_period(uow: UnitOfWork) -> timedelta:
    """How long a relationship outlives its finished encounter: the running service's
    ``care_after_encounter_days`` setting (days of 24 h).

    Raises:
        RuntimeError: the service's settings are not :class:`~healthflow.common.care.CareSettings`.
    """
    if not isinstance(uow.settings, CareSettings):
        raise RuntimeError("the service's settings are not CareSettings")
    return uow.settings.care_period


async def treats(uow: UnitOfWork, doctor_user_id: str, patient_id: str,
                 now: datetime) -> bool:
    """Whether the doctor is in a care relationship with the patient at ``now`` (aware
    UTC), with the service's :func:`care_period`."""
    relationships = await uow.db[CARE_TEAM].find(
        {"doctor_user_id": doctor_user_id, "patient_id": patient_id, "status": "active"},
        session=uow.session).to_list()
    after = care_period(uow)
    return any(in_care(r, now, after) for r in relationships)


async def adopt(collection: AsyncCollection[Any], doc: Document) -> int:
    """Insert ``doc`` (a relationship carried over from an older read model, ``as_of``
    :data:`~healthflow.common.care.BEFORE_ANY_EVENT`) unless its relationship exists; an
    encounter adds to the appointment's relationship adopted just before. 1 if a
    document was made (a restart during a move repeats nothing)."""
    existing = await collection.find_one({"_id": doc["_id"]})
    if existing is None:
        try:
            await collection.insert_one(doc)
        except DuplicateKeyError:  # another replica adopted it meanwhile
            return 0
        return 1
    if doc["encounter_id"] and existing["as_of"] == BEFORE_ANY_EVENT:
        await collection.update_one({"_id": doc["_id"]}, {"$set": {
            "encounter_id": doc["encounter_id"],
            "encounter_finished_at": doc["encounter_finished_at"]}})
    return 0
