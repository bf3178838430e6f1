"""Events the patient service consumes.

* ``user.registered`` (auth, :class:`~healthflow.contracts.auth.UserRegistered`):
  a profile is created when ``roles`` contains ``patient`` (idempotent), with the name
  and contact details opened with the person key auth serves
  (:mod:`healthflow.common.personaldata`); none when the key is gone (erased).
* ``user.contact_changed`` (auth, sealed the same way): the profile's ``telecom`` gets the
  account's new address and number (newest by ``event.time``; never after an erasure:
  :func:`~healthflow.patient.service.contact_changed`).
* ``user.erased`` (auth): the profile forgets the person's demographics
  (:func:`~healthflow.patient.service.erase`).
* ``appointment.booked`` / ``.rescheduled`` / ``.cancelled`` / ``.no_show`` /
  ``.completed`` (appointment, :mod:`healthflow.contracts.appointment`): the
  doctor↔patient care relationships behind ``patients:read_treated`` (from the booking
  until a cancellation or no-show, or until ``care_after_encounter_days`` after
  completion, or after the planned end when never completed); ``event.time`` orders them.
  Their ``hospital_ids`` are the hospitals the patient belongs to (issue 16).
* ``encounter.started`` (records, :class:`~healthflow.contracts.records.EncounterStarted`):
  its ``hospital_id`` (a walk-in's) is one of the patient's hospitals too.
* ``staff.assigned`` / ``staff.removed`` (hospital): the membership read model of
  :mod:`healthflow.common.tenancy` that limits ``patients:read_any`` to the caller's
  hospitals.

Payloads arrive validated against their contracts; one that breaks its contract is
dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common import tenancy
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.personaldata import person_keys_for
from healthflow.common.settings import ServiceSettings
from healthflow.contracts.appointment import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from healthflow.contracts.auth import UserContactChanged, UserErased, UserRegistered
from healthflow.contracts.records import EncounterStarted
from healthflow.patient import service


def make_handlers(settings: ServiceSettings) -> Handlers:
    """The handlers, opening sealed personal values with the keys ``settings`` point at."""
    keys = person_keys_for(settings)

    async def on_user_registered(event: Received[UserRegistered], uow: UnitOfWork) -> None:
        data = event.data
        if "patient" not in data.roles:
            return  # staff accounts have no patient profile
        opened = await keys.open_fields(data.user_id, {
            "full_name": data.full_name, "email": data.email, "phone": data.phone}) or {}
        await service.register(uow, data.user_id, full_name=opened.get("full_name"),
                               email=opened.get("email"), phone=opened.get("phone"))

    async def on_contact_changed(event: Received[UserContactChanged], uow: UnitOfWork) -> None:
        data = event.data
        opened = await keys.open_fields(data.user_id, {"email": data.email,
                                                       "phone": data.phone})
        if opened is not None:  # None: the person was erased, nothing comes back
            await service.contact_changed(uow, data.user_id, email=opened.get("email"),
                                          phone=opened.get("phone"), at=event.time)

    return {"user.registered": on_user_registered, "user.erased": on_user_erased,
            "user.contact_changed": on_contact_changed, **HANDLERS}


async def on_user_erased(event: Received[UserErased], uow: UnitOfWork) -> None:
    await service.erase(uow, event.data.user_id)


async def on_appointment_booked(event: Received[AppointmentBooked], uow: UnitOfWork) -> None:
    await service.belongs_to(uow, event.data.patient_id, event.data.hospital_ids)
    await service.appointment_booked(uow, event.data, event.time)


async def on_appointment_rescheduled(event: Received[AppointmentRescheduled],
                                     uow: UnitOfWork) -> None:
    await service.belongs_to(uow, event.data.patient_id, event.data.hospital_ids)
    await service.appointment_rescheduled(uow, event.data, event.time)


async def on_appointment_cancelled(event: Received[AppointmentCancelled],
                                   uow: UnitOfWork) -> None:
    await service.belongs_to(uow, event.data.patient_id, event.data.hospital_ids)
    await service.appointment_cancelled(uow, event.data, event.time)


async def on_appointment_no_show(event: Received[AppointmentNoShow], uow: UnitOfWork) -> None:
    await service.belongs_to(uow, event.data.patient_id, event.data.hospital_ids)
    await service.appointment_cancelled(uow, event.data, event.time)


async def on_appointment_completed(event: Received[AppointmentCompleted],
                                   uow: UnitOfWork) -> None:
    await service.belongs_to(uow, event.data.patient_id, event.data.hospital_ids)
    await service.appointment_completed(uow, event.data, event.time)


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    if event.data.hospital_id:
        await service.belongs_to(uow, event.data.patient_id, [event.data.hospital_id])


HANDLERS: Handlers = {
    "appointment.booked": on_appointment_booked,
    "appointment.rescheduled": on_appointment_rescheduled,
    "appointment.cancelled": on_appointment_cancelled,
    "appointment.completed": on_appointment_completed,
    "appointment.no_show": on_appointment_no_show,
    "encounter.started": on_encounter_started,
    **tenancy.HANDLERS,
}
