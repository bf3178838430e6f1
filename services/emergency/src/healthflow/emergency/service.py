"""Use cases of the emergency service; routes and handlers both call these.

The emergency service owns the lifecycle (:mod:`.domain`); the paramedic service
owns the units and offers them (its ``paramedic.*`` events move an emergency
between ``raised`` and ``assigned`` here). Names, numbers, addresses and what the
caller said stay in this database; events carry ids, priority and coordinates.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.paramedic import (
    AssignmentEscalated,
    TaskAccepted,
    TaskDeclined,
    TaskOffered,
)
from healthflow.emergency import events, store
from healthflow.emergency.domain import (
    EmergencyNotFound,
    NoLocation,
    NotAssigned,
    Status,
    check_step,
    triage,
)
from healthflow.emergency.schemas import RaiseIn

SYSTEM = "system"


def _role(principal: Principal) -> str:
    if principal.has(Permission.EMERGENCIES_DISPATCH):
        return "dispatcher"
    if principal.has(Permission.EMERGENCIES_UPDATE_ASSIGNED):
        return "paramedic"
    return "patient" if principal.has_role("patient") else sorted(principal.roles)[0]


def new_emergency(principal: Principal, body: RaiseIn, now: datetime) -> Document:
    """The document of a raised emergency (triaged). Raises NoLocation (422): a patient
    without a position, a dispatcher with neither position nor address."""
    dispatcher = principal.has(Permission.EMERGENCIES_DISPATCH)
    if body.position is None and (not dispatcher or body.address is None):
        raise NoLocation("give the position" + (" or the address" if dispatcher else ""))
    position = body.position.model_dump() if body.position else None
    role = _role(principal)
    return {
        "_id": str(uuid.uuid4()), "status": Status.RAISED.value,
        "priority": triage(body.triage.answers()).value, "triage": body.triage.model_dump(),
        "position": position,
        "location": ({"type": "Point", "coordinates": [position["longitude"],
                                                       position["latitude"]]}
                     if position else None),
        "address": body.address, "what_happened": body.what_happened,
        "caller_phone": body.caller_phone if dispatcher else None,
        "raised_by": principal.subject, "raised_by_role": role,
        "patient_id": principal.subject if role == "patient" else None,
        "assignment": None, "escalated": None, "cancel_reason": None,
        "timeline": [{"status": Status.RAISED.value, "at": now, "by_role": role,
                      "by": principal.subject}],
        "version": 1, "created_at": now, "updated_at": now}


async def raise_emergency(runtime: ServiceRuntime, principal: Principal, body: RaiseIn
                          ) -> Document:
    """Raise an emergency (a patient for themselves, a dispatcher for a caller);
    ``emergency.raised``."""
    async def write(uow: UnitOfWork) -> Document:
        doc = new_emergency(principal, body, utcnow())
        await uow.db[store.EMERGENCIES].insert_one(doc, session=uow.session)
        position = doc["position"] or {}
        uow.publish(events.EmergencyRaised(
            emergency_id=doc["_id"], priority=doc["priority"],
            latitude=position.get("latitude"), longitude=position.get("longitude"),
            accuracy_m=position.get("accuracy_m"), raised_by_role=doc["raised_by_role"],
            patient_id=doc["patient_id"], raised_at=doc["created_at"]),
            subject=f"emergency/{doc['_id']}", patientid=doc["patient_id"])
        return doc

    return await runtime.transact(write, actor=principal.actor)


def _visible(principal: Principal, doc: Document) -> bool:
    if principal.has(Permission.EMERGENCIES_DISPATCH):
        return True
    assignment = doc.get("assignment") or {}
    if (principal.has(Permission.EMERGENCIES_UPDATE_ASSIGNED)
            and assignment.get("paramedic_id") == principal.subject):
        return True
    return principal.has(Permission.EMERGENCIES_READ_OWN) and doc["raised_by"] == principal.subject


async def get(runtime: ServiceRuntime, principal: Principal, emergency_id: str) -> Document:
    """An emergency as its raiser, a dispatcher or its assigned crew may read it.
    Raises EmergencyNotFound (404), also for one the caller may not see."""
    doc = await store.get(runtime.db, emergency_id)
    if doc is None or not _visible(principal, doc):
        raise EmergencyNotFound(f"no emergency {emergency_id}")
    return doc


async def board(runtime: ServiceRuntime) -> list[Document]:
    """The dispatchers' board: open emergencies, P1 first, oldest first."""
    return await store.open_board(runtime.db)


def _step(status: Status, now: datetime, role: str, by: str) -> Document:
    return {"status": status.value, "at": now, "by_role": role, "by": by}


async def _move(uow: UnitOfWork, doc: Document, target: Status, role: str, by: str,
                extra: Document | None = None) -> None:
    """Write the status change with its timeline step; ``emergency.status_changed``."""
    now = utcnow()
    fields = {"status": target.value, "updated_at": now, **(extra or {})}
    if not await store.update(uow.db, uow.session, doc, {
            "$set": fields, "$push": {"timeline": _step(target, now, role, by)}}):
        raise Conflict("the emergency changed concurrently; reload and retry")
    unit = (fields.get("assignment") or doc.get("assignment") or {}).get("unit_id")
    uow.publish(events.EmergencyStatusChanged(
        emergency_id=doc["_id"], status=target.value, previous_status=doc["status"],
        unit_id=unit, changed_by_role=role, changed_at=now),
        subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))


async def change_status(runtime: ServiceRuntime, principal: Principal, emergency_id: str,
                        target: Status, reason: str | None) -> Document:
    """The next step of the lifecycle, by a dispatcher or the crew that accepted it.

    Raises:
        EmergencyNotFound (404); NotAssigned (403): a paramedic not on it, or a
        paramedic cancelling; StatusOutOfOrder (409); UnprocessableContent (422).
    """
    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, emergency_id, session=uow.session)
        if doc is None or not _visible(principal, doc):
            raise EmergencyNotFound(f"no emergency {emergency_id}")
        role = _role(principal)
        if role != "dispatcher" and (role != "paramedic" or target is Status.CANCELLED):
            raise NotAssigned("only the dispatchers and the unit on it change its status")
        accepted = bool((doc.get("assignment") or {}).get("accepted_at"))
        check_step(Status(doc["status"]), target, accepted=accepted, reason=reason)
        extra = {"cancel_reason": reason} if target is Status.CANCELLED else None
        await _move(uow, doc, target, role, principal.subject, extra)
        after = await store.get(uow.db, emergency_id, session=uow.session)
        assert after is not None
        return after

    return await runtime.transact(write, actor=principal.actor)


# --------------------------------------------------------------------------- from paramedic


async def on_task_offered(uow: UnitOfWork, data: TaskOffered) -> None:
    """A unit was offered the task: ``raised`` → ``assigned`` (or the next unit while
    ``assigned``); ``emergency.assigned``. Ignored once the crew is under way."""
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if doc is None or doc["status"] not in (Status.RAISED, Status.ASSIGNED):
        return
    assignment = {"task_id": data.task_id, "unit_id": data.unit_id,
                  "paramedic_id": data.paramedic_id, "offered_at": data.offered_at,
                  "accepted_at": None}
    extra = {"assignment": assignment, "escalated": None}
    if doc["status"] == Status.RAISED:
        await _move(uow, doc, Status.ASSIGNED, SYSTEM, SYSTEM, extra)
    elif not await store.update(uow.db, uow.session, doc, {"$set": extra}):
        raise Conflict("the emergency changed concurrently")
    uow.publish(events.EmergencyAssigned(
        emergency_id=doc["_id"], priority=doc["priority"], task_id=data.task_id,
        unit_id=data.unit_id, paramedic_id=data.paramedic_id, assigned_at=data.offered_at),
        subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))


async def on_task_accepted(uow: UnitOfWork, data: TaskAccepted) -> None:
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if doc is None or (doc.get("assignment") or {}).get("task_id") != data.task_id:
        return
    await store.update(uow.db, uow.session, doc,
                       {"$set": {"assignment.accepted_at": data.accepted_at}})


async def on_task_declined(uow: UnitOfWork, data: TaskDeclined) -> None:
    """The offered unit declined or did not answer: back to ``raised`` (unless the next
    unit's offer came first)."""
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if (doc is None or doc["status"] != Status.ASSIGNED
            or (doc.get("assignment") or {}).get("task_id") != data.task_id):
        return
    await _move(uow, doc, Status.RAISED, SYSTEM, SYSTEM, {"assignment": None})


async def on_escalated(uow: UnitOfWork, data: AssignmentEscalated) -> None:
    """No unit could be offered it: flag it on the dispatchers' board."""
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if doc is None or doc["status"] != Status.RAISED:
        return
    await store.update(uow.db, uow.session, doc, {"$set": {
        "escalated": {"reason": data.reason, "at": data.escalated_at}}})
