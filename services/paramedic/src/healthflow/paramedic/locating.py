"""``emergency.located`` in the paramedic service: a dispatcher gave the incident a
position (an emergency raised from an address only has none, so it was escalated
with ``no_position`` and never retried; or a correction).

Each of the emergency's assignments (both slots of a P1) takes the position; one
waiting for a unit (``escalated``, ``pending``, or a P1's second slot that was
``ended`` for want of a position while the first still runs) is made ``pending``
again with every unit askable, so the :mod:`.assigner` offers it as a raised one
(the consumer assigns it right after the commit). An offered or accepted task keeps
its unit; the task takes the new position. Locations may arrive out of order: each
carries ``located_at`` and an older one than the last applied changes nothing. One
that overtakes its ``emergency.raised`` is retried (409 to the consumer).
"""

from __future__ import annotations

from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.emergency import EmergencyLocated
from healthflow.paramedic import store
from healthflow.paramedic.domain import TaskStatus, point, slot_id
from healthflow.paramedic.service import Context

WAITING = ("escalated", "pending")


async def on_located(uow: UnitOfWork, ctx: Context, data: EmergencyLocated) -> None:
    """Apply the position to the emergency's assignments and open tasks (see the module
    docstring). Raises Conflict (409): no assignment yet."""
    primary = await store.get_assignment(uow.db, data.emergency_id, session=uow.session)
    if primary is None:
        raise Conflict("emergency.located before its emergency.raised; retry")
    last = primary.get("located_at")
    if (last is not None and last >= data.located_at) or primary["status"] == "ended":
        return  # an older position delivered late, or the emergency is over
    now, location = ctx.clock(), point(data.latitude, data.longitude)
    second = await store.get_assignment(uow.db, slot_id(data.emergency_id, 2),
                                        session=uow.session)
    for slot in (primary, second):
        if slot is None:
            continue
        fields = {"location": location, "located_at": data.located_at, "updated_at": now}
        revived = slot is second and slot["status"] == "ended" and slot["location"] is None
        if slot["status"] in WAITING or revived:
            fields |= {"status": "pending", "tried": []}
        await store.update_assignment(uow.db, uow.session, slot["_id"], {"$set": fields})
    await uow.db[store.TASKS].update_many(
        {"emergency_id": data.emergency_id,
         "status": {"$in": [TaskStatus.OFFERED.value, TaskStatus.ACCEPTED.value]}},
        {"$set": {"location": location, "updated_at": now}}, session=uow.session)
