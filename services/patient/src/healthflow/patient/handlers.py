"""Events the patient service consumes.

* ``user.registered`` (auth, :class:`~healthflow.contracts.auth.UserRegistered`):
  a profile is created when ``roles`` contains ``patient`` (idempotent).
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
from healthflow.contracts.appointment import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from healthflow.contracts.auth import UserRegistered
from healthflow.contracts.records import EncounterStarted
from healthflow.patient import service


async def on_user_registered(event: Received[UserRegistered], uow: UnitOfWork) -> None:
    data = event.data
    if "patient" not in data.roles:
        return  # staff accounts have no patient profile
    await service.register(uow, data.user_id, full_name=data.full_name, email=data.email,
                           phone=data.phone)


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
    "user.registered": on_user_registered,
    "appointment.booked": on_appointment_booked,
    "appointment.rescheduled": on_appointment_rescheduled,
    "appointment.cancelled": on_appointment_cancelled,
    "appointment.completed": on_appointment_completed,
    "appointment.no_show": on_appointment_no_show,
    "encounter.started": on_encounter_started,
    **tenancy.HANDLERS,
}
