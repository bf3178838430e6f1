"""Events the xray service consumes; each calls a use case of :mod:`.service`.

* ``encounter.started`` / ``encounter.finished`` (records,
  :mod:`healthflow.contracts.records`): which encounters are in progress and who
  conducts them (a doctor orders only in their own), and the doctor↔patient care
  relationship an encounter makes.
* ``appointment.booked`` / ``.rescheduled`` / ``.cancelled`` / ``.no_show``
  (appointment): the care relationship a booked appointment makes, as in the records
  service (:mod:`healthflow.common.careteam`; ``event.time`` orders them).

Payloads arrive validated against their contracts; one that breaks its contract is
dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common import careteam
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.xray import service


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    await service.encounter_started(uow, event.data)


async def on_encounter_finished(event: Received[EncounterFinished], uow: UnitOfWork) -> None:
    await service.encounter_finished(uow, event.data)


async def on_booked(event: Received[AppointmentBooked], uow: UnitOfWork) -> None:
    await careteam.appointment_booked(uow, event.data, event.time)


async def on_rescheduled(event: Received[AppointmentRescheduled], uow: UnitOfWork) -> None:
    await careteam.appointment_rescheduled(uow, event.data, event.time)


async def on_cancelled(event: Received[AppointmentCancelled], uow: UnitOfWork) -> None:
    await careteam.appointment_ended(uow, event.data, event.time)


async def on_no_show(event: Received[AppointmentNoShow], uow: UnitOfWork) -> None:
    await careteam.appointment_ended(uow, event.data, event.time)


HANDLERS: Handlers = {
    "encounter.started": on_encounter_started,
    "encounter.finished": on_encounter_finished,
    "appointment.booked": on_booked,
    "appointment.rescheduled": on_rescheduled,
    "appointment.cancelled": on_cancelled,
    "appointment.no_show": on_no_show,
}
