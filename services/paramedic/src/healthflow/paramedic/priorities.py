"""``emergency.reprioritised`` in the paramedic service (issue 14): the new priority
reaches the units working the emergency.

The emergency's assignments (both slots of a P1) and its open tasks (offered or
accepted) take the new priority; the task's update reaches the paramedic app on its
task stream (the stream is a change stream on the tasks, so the updated task is
pushed as a ``task`` event, no extra machinery). Re-prioritisations may arrive out of
order: each one carries ``reprioritised_at`` and an older one than the last applied
changes nothing. One that overtakes its ``emergency.raised`` is retried (409 to the
consumer: the delivery is retried after a delay). Raised to P1, an emergency that had
one slot gets its second (:data:`.domain.UNITS_FOR_PRIORITY`), which the assigner then
offers — unless the crew is already transporting or at hospital (the scene is empty:
:data:`.domain.PATIENT_LEFT_SCENE`); lowered from P1, a second unit already on it stays
(the dispatchers may stand it down by hand).
"""

from __future__ import annotations

from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.contracts.emergency import EmergencyReprioritised
from healthflow.paramedic import store
from healthflow.paramedic.domain import (
    PATIENT_LEFT_SCENE,
    TaskStatus,
    slot_id,
    units_wanted,
)
from healthflow.paramedic.service import Context


async def on_reprioritised(uow: UnitOfWork, ctx: Context, data: EmergencyReprioritised
                           ) -> str | None:
    """Apply the new priority; returns the id of a second slot it opened (to offer
    after the commit), else ``None``. Raises Conflict (409): no assignment yet."""
    primary = await store.get_assignment(uow.db, data.emergency_id, session=uow.session)
    if primary is None:
        raise Conflict("emergency.reprioritised before its emergency.raised; retry")
    last = primary.get("priority_at")
    if last is not None and last >= data.reprioritised_at:
        return None  # an older re-prioritisation, delivered late
    now = ctx.clock()
    slots = [slot_id(data.emergency_id, s) for s in (1, 2)]
    await uow.db[store.ASSIGNMENTS].update_many(
        {"_id": {"$in": slots}},
        {"$set": {"priority": data.priority, "priority_at": data.reprioritised_at,
                  "updated_at": now}}, session=uow.session)
    await uow.db[store.TASKS].update_many(
        {"emergency_id": data.emergency_id,
         "status": {"$in": [TaskStatus.OFFERED.value, TaskStatus.ACCEPTED.value]}},
        {"$set": {"priority": data.priority, "updated_at": now}}, session=uow.session)
    if (units_wanted(data.priority) < 2 or primary.get("units", 1) >= 2
            or primary["status"] == "ended" or primary.get("location") is None
            or await _patient_left_scene(uow, primary)):
        return None
    second: Document = {
        "_id": slots[1], "emergency_id": data.emergency_id, "slot": 2, "units": 2,
        "priority": data.priority, "priority_at": data.reprioritised_at,
        "location": primary["location"], "status": "pending", "tried": [], "attempts": 0,
        "task_id": None, "escalated_at": None, "created_at": now, "updated_at": now}
    await uow.db[store.ASSIGNMENTS].insert_one(second, session=uow.session)
    await store.update_assignment(uow.db, uow.session, slots[0], {"$set": {"units": 2}})
    return slots[1]


async def _patient_left_scene(uow: UnitOfWork, primary: Document) -> bool:
    """Whether the emergency's crew is transporting or at hospital, as far as its
    ``emergency.status_changed`` has reached this service (a later one stands the
    second slot down, :mod:`.lifecycle`)."""
    task = (await store.get_task(uow.db, primary["task_id"], session=uow.session)
            if primary.get("task_id") else None)
    return task is not None and task.get("emergency_status") in PATIENT_LEFT_SCENE
