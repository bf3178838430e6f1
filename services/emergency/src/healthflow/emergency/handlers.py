"""Events the emergency service consumes (from the paramedic service), each one
service call:

* ``paramedic.task_offered`` — ``raised`` → ``assigned`` (or the next unit);
* ``paramedic.task_accepted`` — the crew accepted (it may now set off);
* ``paramedic.task_declined`` — declined or unanswered: back to ``raised``;
* ``paramedic.assignment_escalated`` — flagged on the dispatchers' board;
* ``paramedic.eta_updated`` — the live ETA the patient or caller sees;
* ``hospital.registered|verified|rejected``, ``department.created``,
  ``staff.assigned`` / ``staff.removed`` — who works where now (:mod:`healthflow.common.tenancy`
  in the ``staff`` collection): the receiving team told of an inbound patient.

Each handler checks the task id it is about, so a decline that arrives after the
next unit's offer changes nothing. The consumer's inbox makes each event count once.
"""

from __future__ import annotations

from healthflow.common import tenancy
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.hospital import DepartmentCreated, HospitalSnapshot
from healthflow.contracts.paramedic import (
    AssignmentEscalated,
    EtaUpdated,
    TaskAccepted,
    TaskDeclined,
    TaskOffered,
)
from healthflow.emergency import destination, service, store


async def on_offered(event: Received[TaskOffered], uow: UnitOfWork) -> None:
    await service.on_task_offered(uow, event.data)


async def on_accepted(event: Received[TaskAccepted], uow: UnitOfWork) -> None:
    await service.on_task_accepted(uow, event.data)


async def on_declined(event: Received[TaskDeclined], uow: UnitOfWork) -> None:
    await service.on_task_declined(uow, event.data)


async def on_escalated(event: Received[AssignmentEscalated], uow: UnitOfWork) -> None:
    await service.on_escalated(uow, event.data)


async def on_eta(event: Received[EtaUpdated], uow: UnitOfWork) -> None:
    await service.on_eta_updated(uow, event.data)


async def on_hospital(event: Received[HospitalSnapshot], uow: UnitOfWork) -> None:
    await destination.on_hospital(uow, event.data)


async def on_department(event: Received[DepartmentCreated], uow: UnitOfWork) -> None:
    await destination.on_department(uow, event.data)


HANDLERS: Handlers = {
    "paramedic.task_offered": on_offered,
    "paramedic.task_accepted": on_accepted,
    "paramedic.task_declined": on_declined,
    "paramedic.assignment_escalated": on_escalated,
    "paramedic.eta_updated": on_eta,
    "hospital.registered": on_hospital,
    "hospital.verified": on_hospital,
    "hospital.rejected": on_hospital,
    "department.created": on_department,
    **tenancy.handlers(store.STAFF),  # staff.assigned / staff.removed: who works where
}
