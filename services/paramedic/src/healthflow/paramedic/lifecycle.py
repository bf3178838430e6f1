"""``emergency.status_changed`` in the paramedic service: the units working an
emergency follow its lifecycle (issue 14).

The emergency service owns the lifecycle; this service owns the units and a
dispatcher's reassignment (:mod:`.dispatch`). The two meet here, and each decides with
a conditional update on the task (its ``status`` and ``emergency_status`` in the filter),
so they cannot both win:

* The crew's step reaches this service after the reassignment withdrew the crew's
  task (the emergency service had not heard of it yet, so it let the step through: the
  event names the crew's ``unit_id``). ``en_route``: the reassignment stands (it is
  allowed en route; the emergency service sends the emergency back to the dispatcher's
  new unit when the reassignment reaches it), and the new unit does not move. ``on_scene``
  or later: the crew is with the patient and the emergency service kept it (it ignores a
  reassignment past en route), so the reassignment is undone here — the new unit's task
  is withdrawn (``paramedic.task_declined`` ``reassigned``) and freed, the crew's task is
  accepted again and its unit takes the step's duty status (if it is still available).
* The step arrived first: the task's ``emergency_status`` is past en route, so the
  reassignment is refused (409 ``cannot-reassign``, :func:`.dispatch.assign`).

A P1's second unit is only sought while the patient is on the scene: once the emergency
is ``transporting`` (or later), a second slot that has no accepted crew ends — its
offer withdrawn (``paramedic.task_declined`` ``stood_down``), its unit freed — and a late
upgrade to P1 opens none (:mod:`.priorities`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from pymongo import DESCENDING

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.paramedic import events, store
from healthflow.paramedic.domain import (
    FINAL_EMERGENCY,
    FOLLOWS_EMERGENCY,
    ON_THE_WAY,
    PATIENT_LEFT_SCENE,
    TaskStatus,
    ids,
    slot_id,
    steps_forward,
)
from healthflow.paramedic.service import Context, free_unit, must

log = logging.getLogger(__name__)

OPEN = (TaskStatus.OFFERED.value, TaskStatus.ACCEPTED.value)


async def on_emergency_status(uow: UnitOfWork, ctx: Context, emergency_id: str,
                              status: str, unit_id: str | None = None) -> None:
    """Follow the emergency's lifecycle: the duty status of each accepted unit on it (a
    P1's two) tracks it (en route … at hospital); closed or cancelled ends the tasks
    and frees the units. ``unit_id``: the crew the event names (``None``: any), see the
    module docstring for a crew reassigned away."""
    assignment = await store.get_assignment(uow.db, emergency_id, session=uow.session)
    now = ctx.clock()
    if assignment is None and status in FINAL_EMERGENCY:  # overtook its emergency.raised
        await uow.db[store.ASSIGNMENTS].insert_one(
            {"_id": emergency_id, "priority": None, "location": None, "status": "ended",
             "tried": [], "attempts": 0, "task_id": None, "created_at": now,
             "updated_at": now}, session=uow.session)
        return
    if assignment is None:
        return
    second = (await store.get_assignment(uow.db, slot_id(emergency_id, 2),
                                         session=uow.session)
              if assignment.get("units") == 2 else None)
    if unit_id is not None and status in FOLLOWS_EMERGENCY:
        withdrawn = await _withdrawn_crew(uow, emergency_id, unit_id, [assignment, second])
        if withdrawn is not None:
            if status not in ON_THE_WAY:
                await _undo_reassignment(uow, ctx, assignment, withdrawn, status, now)
            return
    slots = [s for s in (second, assignment) if s is not None]
    if status in PATIENT_LEFT_SCENE:  # a slot still without an accepted crew ends
        slots = [s for s in slots if not await _stand_down(uow, ctx, s, now)]
    for slot in slots:
        await _follow(uow, ctx, slot, status, now)


async def _withdrawn_crew(uow: UnitOfWork, emergency_id: str, unit_id: str,
                          slots: list[Document | None]) -> Document | None:
    """The task a dispatcher withdrew from ``unit_id`` on the emergency, when that unit
    works none of its current tasks (else ``None``)."""
    current = [s["task_id"] for s in slots if s is not None and s.get("task_id")]
    if current and await uow.db[store.TASKS].find_one(
            {"_id": {"$in": current}, "unit_id": unit_id}, {"_id": 1}, session=uow.session):
        return None
    return await uow.db[store.TASKS].find_one(
        {"emergency_id": emergency_id, "unit_id": unit_id,
         "status": TaskStatus.WITHDRAWN.value},
        sort=[("offered_at", DESCENDING)], session=uow.session)


async def _undo_reassignment(uow: UnitOfWork, ctx: Context, assignment: Document,
                             crew: Document, status: str, now: datetime) -> None:
    """The crew reassigned away reached the patient first: it keeps the emergency."""
    task = (await store.get_task(uow.db, assignment["task_id"], session=uow.session)
            if assignment.get("task_id") else None)
    if task is not None and task["status"] in OPEN:
        must(await store.update_task(uow.db, uow.session, task["_id"], task["status"], {
            "status": TaskStatus.WITHDRAWN.value, "updated_at": now,
            "answered_at": task.get("answered_at") or now}), "the task")
        await free_unit(uow, ctx, task, now)
        uow.publish(events.TaskDeclined(reason="reassigned", declined_at=now, **ids(task)),
                    subject=f"emergency/{task['emergency_id']}")
    must(await store.update_task(uow.db, uow.session, crew["_id"],
                                 TaskStatus.WITHDRAWN.value, {
                                     "status": TaskStatus.ACCEPTED.value,
                                     "emergency_status": status, "updated_at": now}),
         "the crew's task")
    must(await store.update_assignment(uow.db, uow.session, assignment["_id"], {
        "$set": {"status": "accepted", "task_id": crew["_id"], "updated_at": now}}),
         "the assignment")
    if not await store.retake_unit(uow.db, uow.session, crew["unit_id"], crew["_id"],
                                   FOLLOWS_EMERGENCY[status], now):
        log.warning("the crew that kept the emergency was given other work meanwhile",
                    extra={"unit_id": crew["unit_id"], "task_id": crew["_id"]})


async def _stand_down(uow: UnitOfWork, ctx: Context, slot: Document, now: datetime
                      ) -> bool:
    """The patient left the scene: a slot (a P1's first or second) without an accepted
    crew ends, its offer withdrawn and its unit freed (``stood_down``); whether it did."""
    if slot["status"] in ("accepted", "ended"):
        return False
    must(await store.update_assignment(uow.db, uow.session, slot["_id"], {
        "$set": {"status": "ended", "ended_reason": "stood_down", "updated_at": now}}),
         "the assignment")
    task = (await store.get_task(uow.db, slot["task_id"], session=uow.session)
            if slot.get("task_id") else None)
    if task is None or task["status"] != TaskStatus.OFFERED:
        return True
    must(await store.update_task(uow.db, uow.session, task["_id"], TaskStatus.OFFERED, {
        "status": TaskStatus.WITHDRAWN.value, "answered_at": now, "updated_at": now}),
         "the task")
    await free_unit(uow, ctx, task, now)
    uow.publish(events.TaskDeclined(reason="stood_down", declined_at=now, **ids(task)),
                subject=f"emergency/{task['emergency_id']}")
    return True


async def _follow(uow: UnitOfWork, ctx: Context, assignment: Document, status: str,
                  now: datetime) -> None:
    """One assignment (slot) follows the emergency's ``status``."""
    final = status in FINAL_EMERGENCY
    if assignment["status"] == "ended":
        return
    if final:
        must(await store.update_assignment(uow.db, uow.session, assignment["_id"], {
            "$set": {"status": "ended", "updated_at": now}}), "the assignment")
    task = (await store.get_task(uow.db, assignment["task_id"], session=uow.session)
            if assignment.get("task_id") else None)
    if task is None or not steps_forward(task.get("emergency_status") or "assigned", status):
        return
    fields: Document = {"emergency_status": status, "updated_at": now}
    if final and task["status"] in OPEN:
        fields["status"] = (TaskStatus.DONE if status == "closed" else TaskStatus.CANCELLED).value
    must(await store.update_task(uow.db, uow.session, task["_id"], task["status"], fields),
         "the task")  # as read: a reassignment withdrawing it meanwhile conflicts
    if final:
        await free_unit(uow, ctx, task, now)
    elif (duty := FOLLOWS_EMERGENCY.get(status)) is not None and not (
            await store.set_unit_status(uow.db, uow.session, task["unit_id"], task["_id"],
                                        duty, now)):
        log.warning("unit no longer on the task whose emergency moved",
                    extra={"unit_id": task["unit_id"], "task_id": task["_id"]})
