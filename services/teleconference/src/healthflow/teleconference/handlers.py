"""Events the teleconference service consumes.

* ``appointment.booked`` / ``.confirmed`` / ``.rescheduled`` / ``.cancelled`` /
  ``.no_show`` (appointment, :mod:`healthflow.contracts.appointment`): the room of
  each online appointment follows its appointment (times, status); a cancelled one
  is closed for good (:func:`~healthflow.teleconference.service.appointment_changed`).
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.teleconference import service


async def on_appointment(event: Received[AppointmentEvent], uow: UnitOfWork) -> None:
    await service.appointment_changed(uow, event.data, event.time)


HANDLERS: Handlers = {
    "appointment.booked": on_appointment,
    "appointment.confirmed": on_appointment,
    "appointment.rescheduled": on_appointment,
    "appointment.cancelled": on_appointment,
    "appointment.no_show": on_appointment,
}
