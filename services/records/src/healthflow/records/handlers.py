"""Events the records service consumes; each calls a use case of :mod:`.service`.

* ``patient.registered`` (patient, :class:`~healthflow.contracts.patient.PatientRegistered`):
  the ids of patients that exist, so a walk-in encounter names a real one.
* ``hospital.registered`` / ``.verified`` / ``.rejected`` (hospital,
  :class:`~healthflow.contracts.hospital.HospitalSnapshot`): each hospital's status
  (newest ``version`` wins), so a walk-in names only a verified hospital.
* ``appointment.booked`` / ``.rescheduled`` / ``.cancelled`` / ``.checked_in`` /
  ``.completed`` (appointment, :mod:`healthflow.contracts.appointment`): the
  appointment's encounter goes planned → in-progress (at check-in) → finished
  (at completion), or cancelled; they also keep the doctor↔patient care
  relationships (:mod:`.care`), which ``appointment.no_show`` ends as well.
  ``event.time`` (aware UTC) is when it happened and orders them. Their
  ``hospital_ids`` are hospitals the patient belongs to (:mod:`.reach`, issue 16).
* ``teleconsult.started`` / ``.ended`` (teleconference,
  :mod:`healthflow.contracts.teleconference`): an online appointment's encounter
  starts when the doctor admits the patient to the video consultation and finishes
  when it ends.

* ``staff.assigned`` / ``staff.removed`` (hospital): the membership read model of
  :mod:`healthflow.common.tenancy` that limits ``records:read_any`` and
  ``encounters:open_any`` to the caller's hospitals (:mod:`.reach`).

Payloads arrive validated against their contracts; one that breaks its contract
is dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common import careteam, tenancy
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCheckedIn,
    AppointmentCompleted,
    AppointmentEvent,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from healthflow.contracts.hospital import HospitalSnapshot
from healthflow.contracts.patient import PatientRegistered
from healthflow.contracts.teleconference import TeleconsultEnded, TeleconsultStarted
from healthflow.records import reach, service


async def _belongs(uow: UnitOfWork, appointment: AppointmentEvent) -> None:
    await reach.belongs_to(uow, appointment.patient_id, appointment.hospital_ids)


async def on_patient_registered(event: Received[PatientRegistered], uow: UnitOfWork) -> None:
    await service.register_patient(uow, event.data.patient_id, event.data.registered_at)


async def on_hospital(event: Received[HospitalSnapshot], uow: UnitOfWork) -> None:
    await service.hospital_changed(uow, event.data)


async def on_booked(event: Received[AppointmentBooked], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await service.appointment_booked(uow, event.data, event.time)


async def on_rescheduled(event: Received[AppointmentRescheduled], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await service.appointment_rescheduled(uow, event.data, event.time)


async def on_cancelled(event: Received[AppointmentCancelled], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await service.appointment_cancelled(uow, event.data, event.time)


async def on_no_show(event: Received[AppointmentNoShow], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await careteam.appointment_ended(uow, event.data, event.time)


async def on_checked_in(event: Received[AppointmentCheckedIn], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await service.appointment_checked_in(uow, event.data, event.time)


async def on_completed(event: Received[AppointmentCompleted], uow: UnitOfWork) -> None:
    await _belongs(uow, event.data)
    await service.appointment_completed(uow, event.data, event.time)


async def on_teleconsult_started(event: Received[TeleconsultStarted], uow: UnitOfWork) -> None:
    await service.teleconsult_started(uow, event.data)


async def on_teleconsult_ended(event: Received[TeleconsultEnded], uow: UnitOfWork) -> None:
    await service.teleconsult_ended(uow, event.data)


HANDLERS: Handlers = {
    "patient.registered": on_patient_registered,
    "hospital.registered": on_hospital,
    "hospital.verified": on_hospital,
    "hospital.rejected": on_hospital,
    "appointment.booked": on_booked,
    "appointment.rescheduled": on_rescheduled,
    "appointment.cancelled": on_cancelled,
    "appointment.checked_in": on_checked_in,
    "appointment.completed": on_completed,
    "appointment.no_show": on_no_show,
    "teleconsult.started": on_teleconsult_started,
    "teleconsult.ended": on_teleconsult_ended,
    **tenancy.HANDLERS,
}
