"""Events the doctor service consumes, each turned into a call of a :mod:`store` function.

* ``hospital.*`` (``registered``, ``verified``, ``rejected``) → the hospitals read model
  (id → verified?, name, city, time zone), newest ``version`` wins; doctors at a hospital
  whose verification changes are re-indexed for search and re-announced with
  ``doctor.schedule_changed``.
* ``department.created`` → the departments read model (affiliations are checked against it).
* ``appointment.booked`` / ``.rescheduled`` / ``.cancelled`` → the bookings read model
  (fields ``appointment_id``, ``doctor_id``, ``start``, ``end``, ``status``; newest envelope
  ``time`` wins; ``cancelled`` frees the slot) → the doctor's dates with free slots.

Payloads arrive as the publishers' contracts (:mod:`healthflow.contracts`), validated by
the consumer; fields a publisher adds later are ignored there.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.contracts.hospital import DepartmentCreated, HospitalSnapshot
from healthflow.doctor import schedules, service, store

HOSPITAL_FACTS = {"hospital_id", "version", "name", "city", "country", "time_zone", "status"}


async def on_hospital(event: Received[HospitalSnapshot], uow: UnitOfWork) -> None:
    await service.apply_hospital(uow, event.data.model_dump(include=HOSPITAL_FACTS))


async def on_department(event: Received[DepartmentCreated], uow: UnitOfWork) -> None:
    data = event.data
    await service.apply_department(uow, data.department_id, data.hospital_id, data.name)


async def on_booking(event: Received[AppointmentEvent], uow: UnitOfWork) -> None:
    data = event.data
    status = store.FREED if event.type == "appointment.cancelled" else data.status
    await schedules.apply_booking(uow, appointment_id=data.appointment_id,
                              doctor_id=data.doctor_id, start=data.start, end=data.end,
                              status=status, event_time=_time(event.time))


def _time(value: datetime) -> datetime:
    # BSON keeps milliseconds: compare event times at the precision they are stored with.
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


HANDLERS: Handlers = {
    "hospital.registered": on_hospital,
    "hospital.verified": on_hospital,
    "hospital.rejected": on_hospital,
    "department.created": on_department,
    "appointment.booked": on_booking,
    "appointment.rescheduled": on_booking,
    "appointment.cancelled": on_booking,
}
