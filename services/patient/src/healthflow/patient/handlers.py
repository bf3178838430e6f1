"""Events the patient service consumes.

* ``user.registered`` (auth) — data ``{user_id, roles, email, phone, full_name}``:
  a profile is created when ``roles`` contains ``patient`` (idempotent).
* ``appointment.booked`` / ``appointment.cancelled`` (appointment) — data with
  ``appointment_id``, ``patient_id`` and ``doctor_user_id``: the doctor↔patient
  treatment read model behind ``patients:read_treated``.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.patient import service


async def on_user_registered(event: CloudEvent, uow: UnitOfWork) -> None:
    data = event.data
    if "patient" not in (data.get("roles") or []):
        return
    user_id = data.get("user_id") or event.subject
    if not user_id:
        raise ValueError("user.registered without a user_id")
    await service.register(uow, str(user_id), full_name=data.get("full_name"),
                           email=data.get("email"), phone=data.get("phone"))


async def on_appointment_booked(event: CloudEvent, uow: UnitOfWork) -> None:
    await service.record_treatment(uow, dict(event.data), active=True)


async def on_appointment_cancelled(event: CloudEvent, uow: UnitOfWork) -> None:
    await service.record_treatment(uow, dict(event.data), active=False)


HANDLERS: Handlers = {
    "user.registered": on_user_registered,
    "appointment.booked": on_appointment_booked,
    "appointment.cancelled": on_appointment_cancelled,
}
