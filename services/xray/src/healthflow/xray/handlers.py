"""Events the xray service consumes; each calls a use case of :mod:`.service`.

* ``encounter.started`` / ``encounter.finished`` (records,
  :mod:`healthflow.contracts.records`): which encounters are in progress and who
  conducts them (a doctor orders only in their own), and the doctor↔patient care
  relationship an encounter makes.
* ``appointment.booked`` / ``appointment.cancelled`` (appointment): the care
  relationship a booked appointment makes, as in the records and patient services.

Payloads arrive validated against their contracts; one that breaks its contract is
dead-lettered by the consumer, never skipped here.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.contracts.records import EncounterFinished, EncounterStarted
from healthflow.xray import service


async def on_encounter_started(event: Received[EncounterStarted], uow: UnitOfWork) -> None:
    await service.encounter_started(uow, event.data)


async def on_encounter_finished(event: Received[EncounterFinished], uow: UnitOfWork) -> None:
    await service.encounter_finished(uow, event.data)


async def on_booked(event: Received[AppointmentBooked], uow: UnitOfWork) -> None:
    await service.appointment_changed(uow, event.data, cancelled=False)


async def on_cancelled(event: Received[AppointmentCancelled], uow: UnitOfWork) -> None:
    await service.appointment_changed(uow, event.data, cancelled=True)


HANDLERS: Handlers = {
    "encounter.started": on_encounter_started,
    "encounter.finished": on_encounter_finished,
    "appointment.booked": on_booked,
    "appointment.cancelled": on_cancelled,
}
