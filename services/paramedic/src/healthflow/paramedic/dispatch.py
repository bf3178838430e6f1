"""A dispatcher's manual assignment and reassignment of an emergency to a unit.

The claim is the same conditional update as the automatic one
(:func:`store.claim_unit`), so a hand-picked unit is never given two emergencies
either. The unit's travel time is ranked before the transaction (the road graph
is slow next to a write); the claim then re-checks availability and freshness.
A unit that already had the emergency (offered, or accepted and on its way) loses
it: its task is ``withdrawn``, it is available again and ``paramedic.task_declined``
says ``reassigned``. The new offer names the dispatcher and the reason code, so the
audit log holds who moved which unit and why.
"""

from __future__ import annotations

import uuid

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.paramedic import events, store
from healthflow.paramedic.domain import (
    ON_THE_WAY,
    AssignmentNotFound,
    CannotReassign,
    DutyStatus,
    TaskStatus,
    UnitNotAssignable,
    UnitNotFound,
    fresh_since,
    haversine_m,
    ids,
)
from healthflow.paramedic.schemas import AssignIn
from healthflow.paramedic.service import Context, free_unit, is_on_shift, offer


async def _ranked(runtime: ServiceRuntime, ctx: Context, emergency_id: str, unit_id: str
                  ) -> tuple[Document, Document]:
    """The assignment and the unit with its ``distance_m``/``travel_s``/``by_road``.
    Raises AssignmentNotFound (404), CannotReassign (409), UnitNotFound (404),
    UnitNotAssignable (409)."""
    assignment = await store.get_assignment(runtime.db, emergency_id)
    if assignment is None or assignment["location"] is None:
        raise AssignmentNotFound(f"no emergency {emergency_id} with a position awaits a unit")
    if assignment["status"] == "ended":
        raise CannotReassign("the emergency has ended")
    unit = await store.get_unit(runtime.db, unit_id)
    if unit is None:
        raise UnitNotFound(f"no unit {unit_id}")
    if (unit["status"] != DutyStatus.AVAILABLE or unit.get("position_at") is None
            or unit["position_at"] < fresh_since(ctx.clock(), ctx.max_age)):
        raise UnitNotAssignable(f"unit {unit_id} is {unit['status']}"
                                + ("" if unit["status"] != DutyStatus.AVAILABLE
                                   else " but its position is stale"))
    if not is_on_shift(ctx, unit):
        raise UnitNotAssignable(f"unit {unit_id} is off shift")
    if unit.get("takes_emergencies") is False:
        raise UnitNotAssignable(f"unit {unit_id} is a radiographer's: it takes X-ray "
                                "orders, never emergencies")
    lon, lat = assignment["location"]["coordinates"]
    ulon, ulat = unit["location"]["coordinates"]
    [eta] = await ctx.roads.rank((lat, lon), [(unit_id, ulat, ulon)])
    return assignment, unit | {"distance_m": haversine_m(lat, lon, ulat, ulon),
                               "travel_s": round(eta.seconds, 1), "by_road": eta.by_road}


async def _withdraw(uow: UnitOfWork, ctx: Context, assignment: Document) -> None:
    """End the unit's current task on the emergency, if any, and free the unit.
    Raises CannotReassign (409) once the crew is on scene or later."""
    task = (await store.get_task(uow.db, assignment["task_id"], session=uow.session)
            if assignment.get("task_id") else None)
    if task is None or task["status"] not in (TaskStatus.OFFERED, TaskStatus.ACCEPTED):
        return
    if task.get("emergency_status") not in ON_THE_WAY:
        raise CannotReassign(f"the crew is {task['emergency_status']}: too late to swap units")
    now = ctx.clock()
    if not await store.withdraw_task(uow.db, uow.session, task["_id"], task["status"],
                                     sorted(ON_THE_WAY), {
            "status": TaskStatus.WITHDRAWN.value, "answered_at": task.get("answered_at") or now,
            "updated_at": now}):
        raise CannotReassign("the crew moved on meanwhile: too late to swap units")
    await free_unit(uow, ctx, task, now)
    uow.publish(events.TaskDeclined(reason="reassigned", declined_at=now, **ids(task)),
                subject=f"emergency/{task['emergency_id']}")


async def assign(runtime: ServiceRuntime, ctx: Context, principal: Principal,
                 emergency_id: str, body: AssignIn) -> Document:
    """Give the emergency to the unit ``body.unit_id`` (a dispatcher), withdrawing it
    from the unit that has it; returns the new task (offered: the crew still accepts).

    Raises:
        AssignmentNotFound (404): unknown here, or without a position.
        UnitNotFound (404); UnitNotAssignable (409): not available with a fresh position
        (also when another emergency claims it first, or it already has this one);
        CannotReassign (409): ended, or the crew on scene or later.
    """
    _, unit = await _ranked(runtime, ctx, emergency_id, body.unit_id)

    async def write(uow: UnitOfWork) -> Document:
        current = await store.get_assignment(uow.db, emergency_id, session=uow.session)
        if current is None or current["status"] == "ended":
            raise CannotReassign("the emergency has ended")
        await _withdraw(uow, ctx, current)
        task_id = str(uuid.uuid4())
        if not await store.claim_unit(uow.db, uow.session, body.unit_id,
                                      fresh_since=fresh_since(ctx.clock(), ctx.max_age),
                                      task_id=task_id, now=ctx.clock()):
            raise UnitNotAssignable(f"unit {body.unit_id} was taken or went off duty")
        return await offer(uow, ctx, current, unit, task_id, assigned_by=principal.subject,
                           reason=body.reason.value)

    return await runtime.transact(write, actor=principal.actor)
