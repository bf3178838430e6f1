"""Events the appointment service consumes: the doctor availability read model.

* ``doctor.schedule_changed`` — the doctor's verified flag, time zone(s),
  weekly rules, slot length, breaks, leave, modes and fees (normalised by
  :func:`~healthflow.appointment.availability.availability_from_event`); a
  payload older than the stored one (by event ``time``) is ignored.
* ``doctor.verified`` / ``doctor.rejected`` — flip the verified flag.
"""

from __future__ import annotations

from healthflow.appointment import service, store
from healthflow.appointment.availability import availability_from_event
from healthflow.common.events.consumer import Handlers
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork


async def on_schedule_changed(event: CloudEvent, uow: UnitOfWork) -> None:
    data = dict(event.data)
    data.setdefault("doctor_id", event.subject)
    await service.apply_schedule(uow, availability_from_event(data, as_of=event.time))


async def on_verification(event: CloudEvent, uow: UnitOfWork) -> None:
    doctor_id = event.data.get("doctor_id") or event.subject
    if not doctor_id:
        raise ValueError(f"{event.type} without a doctor id")
    user_id = event.data.get("doctor_user_id") or event.data.get("user_id")
    await store.set_verified(uow.db, uow.session, str(doctor_id),
                             event.type == "doctor.verified", user_id)


HANDLERS: Handlers = {
    "doctor.schedule_changed": on_schedule_changed,
    "doctor.verified": on_verification,
    "doctor.rejected": on_verification,
}
