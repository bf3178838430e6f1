"""The app's acknowledgement of an offer pushed on its open task stream, and the SMS
when none comes.

An offer made while the unit's task stream was seen (``stream_connected`` true) is
pushed on the stream only; the app acknowledges it (``POST
/api/v1/paramedics/me/tasks/{id}/ack``; an accept or decline counts too). The offer
writes a job (:mod:`healthflow.common.jobs`, so the timer survives a restart) due
``ack_timeout_s`` later: if the task is then still offered and unacknowledged, it
publishes ``paramedic.task_unacknowledged`` and the notification service texts the
paramedic, as it does for an offer made with the stream closed. The job's key (one
per task) and the task's ``sms_fallback_at`` make it once per task.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.paramedic import events, store
from healthflow.paramedic.domain import TaskNotFound, TaskNotOffered, TaskStatus

ACK_TIMEOUT = "paramedic-offer-ack"
"""Job queue: ``{task_id}`` when an offer pushed on the stream was not acknowledged."""


async def schedule(uow: UnitOfWork, task: Document, timeout_s: float, now: datetime
                   ) -> None:
    """The acknowledgement timer of ``task``, offered on an open stream at ``now``."""
    await jobs.enqueue(uow.db, ACK_TIMEOUT, {"task_id": task["_id"]},
                       run_at=now + timedelta(seconds=timeout_s),
                       key=f"offer-ack:{task['_id']}", session=uow.session, now=now)


async def acknowledge(runtime: ServiceRuntime, principal: Principal, task_id: str,
                      now: datetime) -> Document:
    """The app received the offer ``task_id`` (idempotent: the first time is kept).

    Raises:
        TaskNotFound (404): no such task for the caller's unit.
        TaskNotOffered (409): the task is no longer offered (answered, expired,
            withdrawn): nothing to acknowledge.
    """
    tasks = runtime.db[store.TASKS]
    doc = await tasks.find_one({"_id": task_id})
    if doc is None or doc["paramedic_id"] != principal.subject:
        raise TaskNotFound(f"no task {task_id} for your unit")
    if doc["status"] != TaskStatus.OFFERED:
        raise TaskNotOffered(f"the task is {doc['status']}; there is no offer to acknowledge")
    await tasks.update_one({"_id": task_id, "acknowledged_at": None},
                           {"$set": {"acknowledged_at": now}})
    found = await tasks.find_one({"_id": task_id})
    assert found is not None
    return found


async def on_ack_timeout(uow: UnitOfWork, job: jobs.Job, now: datetime) -> None:
    """The timer: a task still offered and not acknowledged goes out by SMS too (once)."""
    result = await uow.db[store.TASKS].find_one_and_update(
        {"_id": job.payload["task_id"], "status": TaskStatus.OFFERED.value,
         "acknowledged_at": None, "sms_fallback_at": None},
        {"$set": {"sms_fallback_at": now}}, session=uow.session)
    if result is None:
        return
    task: Document = result
    event = events.TaskUnacknowledged(
        task_id=task["_id"], unit_id=task["unit_id"], paramedic_id=task["paramedic_id"],
        emergency_id=task.get("emergency_id"), order_id=task.get("order_id"),
        call_sign=task.get("call_sign"), offered_at=task["offered_at"],
        expires_at=task["expires_at"])
    subject = (f"xray-order/{task['order_id']}" if task.get("order_id")
               else f"emergency/{task['emergency_id']}")
    uow.publish(event, subject=subject)
