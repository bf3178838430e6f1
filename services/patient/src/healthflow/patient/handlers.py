"""Events the patient service consumes.

* ``user.registered`` (auth, :class:`~healthflow.contracts.auth.UserRegistered`):
  a profile is created when ``roles`` contains ``patient`` (idempotent).
* ``appointment.booked`` / ``appointment.cancelled`` (appointment,
  :mod:`healthflow.contracts.appointment`): ``appointment_id``, ``patient_id`` and
  ``doctor_user_id`` feed the doctor↔patient treatment read model behind
  ``patients:read_treated``.

Payloads arrive validated against their contracts; one that breaks its contract is
dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.contracts.auth import UserRegistered
from healthflow.patient import service


async def on_user_registered(event: Received[UserRegistered], uow: UnitOfWork) -> None:
    data = event.data
    if "patient" not in data.roles:
        return  # staff accounts have no patient profile
    await service.register(uow, data.user_id, full_name=data.full_name, email=data.email,
                           phone=data.phone)


async def on_appointment_booked(event: Received[AppointmentBooked], uow: UnitOfWork) -> None:
    await service.record_treatment(uow, event.data, active=True)


async def on_appointment_cancelled(event: Received[AppointmentCancelled],
                                   uow: UnitOfWork) -> None:
    await service.record_treatment(uow, event.data, active=False)


HANDLERS: Handlers = {
    "user.registered": on_user_registered,
    "appointment.booked": on_appointment_booked,
    "appointment.cancelled": on_appointment_cancelled,
}
