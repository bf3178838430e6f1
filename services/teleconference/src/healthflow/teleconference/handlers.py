"""Events the teleconference service consumes.

* ``appointment.booked`` / ``.confirmed`` / ``.rescheduled`` / ``.cancelled`` /
  ``.no_show`` (appointment, :mod:`healthflow.contracts.appointment`): the room of
  each online appointment follows its appointment (times, status); a cancelled one
  is closed for good (:func:`~healthflow.teleconference.service.appointment_changed`).
* ``doctor.schedule_changed`` (doctor,
  :class:`~healthflow.contracts.doctor.DoctorScheduleChanged`): the doctor's hospitals
  (newest ``version`` wins); an online consultation belongs to the first, whose
  recording retention period applies.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.contracts.doctor import DoctorScheduleChanged
from healthflow.teleconference import service, store


async def on_appointment(event: Received[AppointmentEvent], uow: UnitOfWork) -> None:
    await service.appointment_changed(uow, event.data, event.time)


async def on_schedule_changed(event: Received[DoctorScheduleChanged],
                              uow: UnitOfWork) -> None:
    data = event.data
    hospitals = list(dict.fromkeys(loc.hospital_id for loc in data.locations
                                   if loc.hospital_id))
    await store.put_doctor(uow, data.doctor_id, data.version, hospitals)


HANDLERS: Handlers = {
    "doctor.schedule_changed": on_schedule_changed,
    "appointment.booked": on_appointment,
    "appointment.confirmed": on_appointment,
    "appointment.rescheduled": on_appointment,
    "appointment.cancelled": on_appointment,
    "appointment.no_show": on_appointment,
}
