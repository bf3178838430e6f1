"""The second unit of a P1 (issue 14: "P1 may take two units").

The paramedic service offers a P1 to two units, each a *slot* of its own (the task
events and ``paramedic.assignment_escalated`` say ``slot`` 1 or 2). Slot 1 is the
emergency's ``assignment`` as before, with its rules (:mod:`.service`). Slot 2 is
kept in ``second`` = ``{assignment, sequence, ended_tasks, escalated}`` by the same
out-of-order rules, applied to that slot alone: ``sequence`` orders its offers (2·a)
and escalations (2·n + 1), ``ended_tasks`` its declined or timed-out tasks, an
acceptance is taken even before its offer, and an accepted second crew is never
displaced. Every write goes through the emergency's ``version`` (a revision), so
concurrent deliveries for the two slots cannot overwrite each other.

The lifecycle rule: the emergency has one status. Whichever of its accepted crews
reports a step first moves it (either may, each only once it accepted itself; the
other crew's later report of the same step is 409 ``status-out-of-order``, its app
then shows the current status); the units' duty statuses follow the emergency in the
paramedic service. Slot 2's offers, declines and escalations only update ``second``
(the board shows it; the dispatchers see ``second.escalated``); its acceptance moves
a ``raised`` emergency to ``assigned`` (slot 1 may have lost its unit and escalated
meanwhile), and while it holds, slot 1 losing its offer does not send the emergency
back to ``raised``. The responder shown with its ETA is an accepted crew (the one
arriving first when both did), else slot 1's offered unit (:func:`responder`).
"""

from __future__ import annotations

from typing import Any

from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.contracts.paramedic import (
    AssignmentEscalated,
    TaskAccepted,
    TaskDeclined,
    TaskOffered,
)
from healthflow.emergency import store
from healthflow.emergency.domain import FINAL

SECOND = 2


def is_second(data: Any) -> bool:
    """Whether a paramedic event is about a P1's second unit."""
    return (getattr(data, "slot", None) or 1) == SECOND


def crews(doc: Document) -> list[Document]:
    """The emergency's assignments, slot 1 first (those it has)."""
    second = (doc.get("second") or {}).get("assignment")
    return [a for a in (doc.get("assignment"), second) if a]


def accepted(doc: Document) -> bool:
    """Whether any crew on the emergency accepted it."""
    return any(a.get("accepted_at") for a in crews(doc))


def is_crew(doc: Document, paramedic_id: str) -> bool:
    return any(a.get("paramedic_id") == paramedic_id for a in crews(doc))


def accepted_by(doc: Document, paramedic_id: str) -> bool:
    """Whether ``paramedic_id``'s own assignment on the emergency is accepted (a crew
    only offered a P1 does not move it, even when the other crew accepted)."""
    return any(a.get("paramedic_id") == paramedic_id and a.get("accepted_at")
               for a in crews(doc))


def second_accepted(doc: Document) -> bool:
    """Whether a P1's second crew accepted (then the emergency stays ``assigned`` or
    beyond whatever slot 1 does)."""
    return bool((_slot(doc).get("assignment") or {}).get("accepted_at"))


def stood_down(doc: Document) -> Document:
    """The fields that end a P1's slot without an accepted crew when the patient leaves
    the scene (``transporting``): the second slot, or slot 1 while the second crew
    carries the patient. Nobody is sought for an empty scene, so the board stops
    flagging it (the paramedic service stands the slot down on the same status change)."""
    fields: Document = {}
    if doc.get("second") and not second_accepted(doc):
        fields |= {"second.assignment": None, "second.escalated": None}
    if second_accepted(doc) and not (doc.get("assignment") or {}).get("accepted_at"):
        fields |= {"assignment": None, "escalated": None}
    return fields


def responder(doc: Document) -> Document | None:
    """The crew shown as coming: the one the held ``eta`` is for when it is a crew of
    the emergency, else the first accepted crew, else slot 1's assignment."""
    task_id = (doc.get("eta") or {}).get("task_id")
    on_it = crews(doc)
    for crew in on_it:
        if task_id is not None and crew.get("task_id") == task_id:
            return crew
    return next((a for a in on_it if a.get("accepted_at")), doc.get("assignment"))


def eta_applies(doc: Document, task_id: str, eta: Document) -> str | None:
    """Where the call sign of ``task_id``'s crew is kept (``assignment`` or
    ``second.assignment``) when its ``eta`` (``travel_s``, ``computed_at``) should
    replace the held one, else None: the task is none of the emergency's crews, the held
    ETA is its own from a later report, or it is the other accepted crew's and that
    crew arrives first."""
    paths = {"assignment": doc.get("assignment") or {},
             "second.assignment": _slot(doc).get("assignment") or {}}
    path = next((p for p, a in paths.items() if a.get("task_id") == task_id), None)
    held = doc.get("eta")
    if path is None or not held:
        return path
    if held.get("task_id") == task_id:
        return path if held["computed_at"] < eta["computed_at"] else None
    other = next((a for a in paths.values() if a.get("task_id") == held.get("task_id")),
                 None)
    if other is None or not other.get("accepted_at"):
        return path
    return path if _arrival(eta) < _arrival(held) else None


def _arrival(eta: Document) -> float:
    return float(eta["computed_at"].timestamp()) + float(eta["travel_s"])


async def _set(uow: UnitOfWork, doc: Document, fields: Document,
               add_ended: str | None = None) -> None:
    update: Document = {"$set": {f"second.{k}": v for k, v in fields.items()}
                        | {"updated_at": utcnow()}}
    if add_ended is not None:
        update["$addToSet"] = {"second.ended_tasks": add_ended}
    if not await store.update(uow.db, uow.session, doc, update):
        raise Conflict("the emergency changed concurrently")


def _slot(doc: Document) -> Document:
    return doc.get("second") or {}


async def _open(uow: UnitOfWork, emergency_id: str) -> Document | None:
    doc = await store.get(uow.db, emergency_id, session=uow.session)
    return None if doc is None or doc["status"] in FINAL else doc


async def on_offered(uow: UnitOfWork, data: TaskOffered) -> None:
    """The second slot was offered to a unit (ignored when stale, after its own
    decline, or when the second crew already accepted)."""
    doc = await _open(uow, data.emergency_id)
    if doc is None:
        return
    slot = _slot(doc)
    current = slot.get("assignment") or {}
    if current.get("task_id") == data.task_id:
        if current.get("offered_at") is None:
            await _set(uow, doc, {"assignment.offered_at": data.offered_at})
        return
    if (2 * data.attempt <= int(slot.get("sequence") or 0) or current.get("accepted_at")
            or data.task_id in (slot.get("ended_tasks") or [])):
        return
    await _set(uow, doc, {"assignment": {
        "task_id": data.task_id, "unit_id": data.unit_id, "paramedic_id": data.paramedic_id,
        "call_sign": data.call_sign, "offered_at": data.offered_at,
        "accepted_at": (slot.get("early_acceptances") or {}).get(data.task_id),
        "assigned_by": data.assigned_by, "reason": data.reason},
        "sequence": 2 * data.attempt, "escalated": None})


async def on_accepted(uow: UnitOfWork, data: TaskAccepted) -> bool:
    """The second crew accepted (taken even before its offer arrives). True when the
    emergency is ``raised`` with this crew now accepted: the caller moves it to
    ``assigned``."""
    doc = await _open(uow, data.emergency_id)
    if doc is None:
        return False
    current = _slot(doc).get("assignment") or {}
    if current.get("task_id") == data.task_id:
        if current.get("accepted_at") is None:
            await _set(uow, doc, {"assignment.accepted_at": data.accepted_at})
        return doc["status"] == "raised"
    if current.get("accepted_at"):
        await _set(uow, doc, {f"early_acceptances.{data.task_id}": data.accepted_at})
        return False
    await _set(uow, doc, {"assignment": {
        "task_id": data.task_id, "unit_id": data.unit_id, "paramedic_id": data.paramedic_id,
        "call_sign": None, "offered_at": None, "accepted_at": data.accepted_at},
        "escalated": None})
    return doc["status"] == "raised"


async def on_declined(uow: UnitOfWork, data: TaskDeclined) -> None:
    """The second slot's unit declined, timed out or was reassigned: the slot waits
    for the next unit; the task is remembered so its late offer changes nothing."""
    doc = await _open(uow, data.emergency_id)
    if doc is None:
        return
    current = _slot(doc).get("assignment") or {}
    fields: Document = ({"assignment": None} if current.get("task_id") == data.task_id
                        and not current.get("accepted_at") else {})
    await _set(uow, doc, fields, add_ended=data.task_id)


async def on_escalated(uow: UnitOfWork, data: AssignmentEscalated) -> None:
    """No unit for the second slot: flag it for the dispatchers (not when stale or
    when the second crew accepted)."""
    doc = await _open(uow, data.emergency_id)
    if doc is None:
        return
    slot, sequence = _slot(doc), 2 * data.attempts + 1
    if sequence <= int(slot.get("sequence") or 0) or (
            slot.get("assignment") or {}).get("accepted_at"):
        return
    await _set(uow, doc, {"assignment": None, "sequence": sequence,
                          "escalated": {"reason": data.reason, "at": data.escalated_at}})
