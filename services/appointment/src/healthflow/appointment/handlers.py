"""Events the appointment service consumes: the doctor availability read model.

``doctor.schedule_changed`` carries the doctor's complete bookable state
(verification, time zones, weekly windows, slot length, leave, modes, fee): the
consumer hands it over validated against its contract
(:class:`healthflow.contracts.doctor.DoctorScheduleChanged`); see
:func:`~healthflow.appointment.availability.availability_from_event`. The
doctor service publishes it on every change that matters here, verification
included, so it is the only doctor event consumed; a payload whose
``version`` is not newer than the stored one is ignored (delivery is
at-least-once and unordered).
"""

from __future__ import annotations

from healthflow.appointment import service
from healthflow.appointment.availability import availability_from_event
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.doctor import DoctorScheduleChanged


async def on_schedule_changed(event: Received[DoctorScheduleChanged], uow: UnitOfWork) -> None:
    await service.apply_schedule(uow, availability_from_event(event.data, as_of=event.time))


HANDLERS: Handlers = {"doctor.schedule_changed": on_schedule_changed}
