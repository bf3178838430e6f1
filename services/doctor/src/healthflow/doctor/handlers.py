"""Events the doctor service consumes, each turned into a call of a :mod:`store` function.

* ``hospital.*`` (``registered``, ``verified``, ``rejected``) → the hospitals read model
  (id → verified?, name, city, time zone), newest ``version`` wins; doctors at a hospital
  whose verification changes are re-indexed for search and re-announced with
  ``doctor.schedule_changed``.
* ``department.created`` → the departments read model (affiliations are checked against it).
* ``appointment.booked`` / ``.rescheduled`` / ``.cancelled`` → the bookings read model
  (fields ``appointment_id``, ``doctor_id``, ``start``, ``end``, ``status``; newest envelope
  ``time`` wins; ``cancelled`` frees the slot) → the doctor's dates with free slots.

Payloads are parsed with local models that ignore fields this service does not use, so
publishers may add fields without breaking it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from healthflow.common.events.consumer import Handlers
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.doctor import store


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class HospitalFactsIn(_Incoming):
    hospital_id: str
    version: int
    name: str
    city: str
    country: str
    time_zone: str
    status: str


class DepartmentIn(_Incoming):
    hospital_id: str
    department_id: str
    name: str


class BookingIn(_Incoming):
    appointment_id: str
    doctor_id: str
    start: AwareDatetime
    end: AwareDatetime
    status: str = "booked"


async def on_hospital(event: CloudEvent, uow: UnitOfWork) -> None:
    await store.apply_hospital(uow, HospitalFactsIn.model_validate(event.data).model_dump())


async def on_department(event: CloudEvent, uow: UnitOfWork) -> None:
    data = DepartmentIn.model_validate(event.data)
    await store.apply_department(uow, data.department_id, data.hospital_id, data.name)


async def on_booking(event: CloudEvent, uow: UnitOfWork) -> None:
    data = BookingIn.model_validate(event.data)
    status = store.FREED if event.type == "appointment.cancelled" else data.status
    await store.apply_booking(uow, appointment_id=data.appointment_id,
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
