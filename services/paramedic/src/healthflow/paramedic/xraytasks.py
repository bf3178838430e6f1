"""X-ray tasks (issues 12 and 14): the paramedic service's side of the X-ray order.

``xray.requested`` makes an assignment of kind ``xray`` that the :mod:`.assigner`
offers like an emergency (same claim, offer, timer, accept/decline, task stream) to
an available, on-shift unit qualified in radiography; ``xray.revoked`` cancels its
task and ``xray.uploaded`` completes it (:func:`on_xray_ended`).
"""

from __future__ import annotations

from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.xray import XrayRequested
from healthflow.paramedic import store
from healthflow.paramedic.domain import TaskKind, TaskStatus
from healthflow.paramedic.service import Context, free_unit, must, publish_xray_ended


def xray_assignment_id(order_id: str) -> str:
    """The assignment of an X-ray order (prefixed: never an emergency's id)."""
    return f"xray:{order_id}"


async def on_xray_requested(uow: UnitOfWork, ctx: Context, data: XrayRequested) -> None:
    """Record a new X-ray order as a ``pending`` assignment of kind ``xray`` (once per
    order; an order revoked or imaged before its request arrived stays ended): the
    :mod:`.assigner` offers it to an available radiography-qualified unit after this
    transaction, or queues it (``escalated``, retried) when there is none.

    Kept from the order: its id and accession number (to find it on the imaging work
    list and match the images), body part, view and priority — what the crew needs to
    go and take it. Not the patient nor the clinical question (neither is in the event)."""
    key = xray_assignment_id(data.order_id)
    if await store.get_assignment(uow.db, key, session=uow.session):
        return
    now = ctx.clock()
    await uow.db[store.ASSIGNMENTS].insert_one({
        "_id": key, "kind": TaskKind.XRAY.value, "order_id": data.order_id,
        "accession_number": data.accession_number, "body_part": data.body_part,
        "view": data.view, "priority": data.priority, "location": None,
        "status": "pending", "tried": [], "attempts": 0, "task_id": None,
        "escalated_at": None, "created_at": now, "updated_at": now}, session=uow.session)


async def on_xray_ended(uow: UnitOfWork, ctx: Context, order_id: str, reason: str) -> None:
    """The order was revoked (``reason`` ``revoked``: an open task ``cancelled``) or an
    image was stored for it (``completed``: an open task ``done``): the assignment ends,
    the unit is free again and ``paramedic.xray_task_ended`` says why; the change is on
    the crew's task stream. An order not seen yet is recorded as ended, so a late
    ``xray.requested`` makes no task; an ended one is left alone (redelivery, a
    second image)."""
    key = xray_assignment_id(order_id)
    now = ctx.clock()
    assignment = await store.get_assignment(uow.db, key, session=uow.session)
    if assignment is None:
        await uow.db[store.ASSIGNMENTS].insert_one({
            "_id": key, "kind": TaskKind.XRAY.value, "order_id": order_id, "location": None,
            "status": "ended", "tried": [], "attempts": 0, "task_id": None,
            "created_at": now, "updated_at": now}, session=uow.session)
        return
    if assignment["status"] == "ended":
        return
    must(await store.update_assignment(uow.db, uow.session, key, {
        "$set": {"status": "ended", "ended_reason": reason, "updated_at": now}}),
         "the assignment")
    task = (await store.get_task(uow.db, assignment["task_id"], session=uow.session)
            if assignment.get("task_id") else None)
    if task is None or task["status"] not in (TaskStatus.OFFERED, TaskStatus.ACCEPTED):
        return
    status = TaskStatus.DONE if reason == "completed" else TaskStatus.CANCELLED
    must(await store.update_task(uow.db, uow.session, task["_id"], task["status"], {
        "status": status.value, "updated_at": now}), "the task")
    await free_unit(uow, ctx, task, now)
    publish_xray_ended(uow, task, reason, now)
