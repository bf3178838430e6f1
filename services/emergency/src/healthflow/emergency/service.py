"""Use cases of the emergency service; routes and handlers both call these.

The emergency service owns the lifecycle (:mod:`.domain`); the paramedic service
owns the units and offers them (its ``paramedic.*`` events move an emergency
between ``raised`` and ``assigned`` here). Names, numbers, addresses and what the
caller said stay in this database; events carry ids, priority and coordinates.
"""

from __future__ import annotations

import logging
from datetime import datetime

from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.paramedic import (
    AssignmentEscalated,
    EtaUpdated,
    TaskAccepted,
    TaskDeclined,
    TaskOffered,
)
from healthflow.emergency import crews, destination, events, store
from healthflow.emergency.domain import (
    FINAL,
    LOCATABLE,
    CannotLocate,
    CannotReprioritise,
    CrewReassigned,
    EmergencyNotFound,
    NotAssigned,
    Priority,
    ReprioritiseReason,
    Status,
    StatusOutOfOrder,
    check_step,
    geo_point,
)
from healthflow.emergency.raising import (  # the raise is raising.py's; re-exported
    raise_emergency as raise_emergency,
)
from healthflow.emergency.schemas import PositionIn

log = logging.getLogger(__name__)

SYSTEM = "system"


def _role(principal: Principal) -> str:
    if principal.has(Permission.EMERGENCIES_DISPATCH):
        return "dispatcher"
    if principal.has(Permission.EMERGENCIES_UPDATE_ASSIGNED):
        return "paramedic"
    return "patient" if principal.has_role("patient") else sorted(principal.roles)[0]


def visible(principal: Principal, doc: Document) -> bool:
    """Whether ``principal`` may read ``doc``: a dispatcher, its current crews, its raiser,
    and the patient it is for (a clinician named them: they see who is coming too)."""
    if principal.has(Permission.EMERGENCIES_DISPATCH):
        return True
    if (principal.has(Permission.EMERGENCIES_UPDATE_ASSIGNED)
            and crews.is_crew(doc, principal.subject)):  # a P1's two crews
        return True
    return principal.has(Permission.EMERGENCIES_READ_OWN) and principal.subject in (
        doc["raised_by"], doc.get("patient_id"))


def reassigned_away(principal: Principal, doc: Document) -> bool:
    """Whether ``principal`` is a crew a dispatcher's reassignment took the emergency
    from (and not on it again)."""
    return (principal.subject in (doc.get("withdrawn_crews") or [])
            and not crews.is_crew(doc, principal.subject))


async def get(runtime: ServiceRuntime, principal: Principal, emergency_id: str) -> Document:
    """An emergency as its raiser, a dispatcher or its assigned crew may read it.
    Raises EmergencyNotFound (404), also for one the caller may not see."""
    doc = await store.get(runtime.db, emergency_id)
    if doc is None or not visible(principal, doc):
        raise EmergencyNotFound(f"no emergency {emergency_id}")
    return doc


async def board(runtime: ServiceRuntime) -> list[Document]:
    """The dispatchers' board: open emergencies, P1 first, oldest first."""
    return await store.open_board(runtime.db)


def _step(status: Status, now: datetime, role: str, by: str) -> Document:
    return {"status": status.value, "at": now, "by_role": role, "by": by}


async def _move(uow: UnitOfWork, doc: Document, target: Status, role: str, by: str,
                extra: Document | None = None, also: Document | None = None) -> None:
    """Write the status change with its timeline step (``extra``: more fields to set;
    ``also``: more update operators); ``emergency.status_changed``."""
    now = utcnow()
    fields = {"status": target.value, "updated_at": now, **(extra or {})}
    if not await store.update(uow.db, uow.session, doc, {
            **(also or {}),
            "$set": fields, "$push": {"timeline": _step(target, now, role, by)}}):
        raise Conflict("the emergency changed concurrently; reload and retry")
    unit = (fields.get("assignment") or crews.responder(doc) or {}).get("unit_id")
    uow.publish(events.EmergencyStatusChanged(
        emergency_id=doc["_id"], status=target.value, previous_status=doc["status"],
        unit_id=unit, changed_by_role=role, changed_at=now),
        subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))


async def change_status(runtime: ServiceRuntime, principal: Principal, emergency_id: str,
                        target: Status, reason: str | None) -> Document:
    """The next step of the lifecycle, by a dispatcher or the crew that accepted it.
    ``transporting`` chooses the destination hospital and tells its staff
    (:func:`.destination.choose`).

    Raises:
        EmergencyNotFound (404); NotAssigned (403): a paramedic not on it, or a
        paramedic cancelling; StatusOutOfOrder (409); CrewReassigned (409): a crew a
        dispatcher's reassignment took it from (known here from the reassignment's
        ``paramedic.task_declined``/``task_offered``; a step that came first stands and
        the paramedic service undoes the reassignment past en route); Conflict (409):
        changed concurrently; UnprocessableContent (422).
    """
    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, emergency_id, session=uow.session)
        if doc is not None and reassigned_away(principal, doc):
            raise CrewReassigned("a dispatcher gave this emergency to another unit")
        if doc is None or not visible(principal, doc):
            raise EmergencyNotFound(f"no emergency {emergency_id}")
        role = _role(principal)
        if role != "dispatcher" and (role != "paramedic" or target is Status.CANCELLED):
            raise NotAssigned("only the dispatchers and the unit on it change its status")
        accepted = (crews.accepted(doc) if role == "dispatcher"
                    else crews.accepted_by(doc, principal.subject))
        if role == "paramedic" and not accepted:  # only offered: not theirs to move
            raise StatusOutOfOrder("this unit has not accepted the task")
        check_step(Status(doc["status"]), target, accepted=accepted,
                   reason=reason)  # either accepted crew of a P1 moves it: first step wins
        extra: Document | None = ({"cancel_reason": reason} if target is Status.CANCELLED
                                  else None)
        if target is Status.TRANSPORTING:
            extra = {"destination": await destination.choose(uow, doc, utcnow()),
                     **crews.stood_down(doc)}
        await _move(uow, doc, target, role, principal.subject, extra)
        after = await store.get(uow.db, emergency_id, session=uow.session)
        assert after is not None
        return after

    return await runtime.transact(write, actor=principal.actor)


async def reprioritise(runtime: ServiceRuntime, principal: Principal, emergency_id: str,
                       priority: Priority, reason: ReprioritiseReason) -> Document:
    """A dispatcher sets the priority (P1 … P4) of an open emergency, for ``reason``:
    recorded in ``priority_changes`` (timestamped, by whom) and published as
    ``emergency.reprioritised``, hence in the audit log.

    Raises:
        EmergencyNotFound (404); CannotReprioritise (409): closed or cancelled, or
        already that priority; Conflict (409): changed concurrently.
    """
    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, emergency_id, session=uow.session)
        if doc is None:
            raise EmergencyNotFound(f"no emergency {emergency_id}")
        if doc["status"] in FINAL:
            raise CannotReprioritise(f"the emergency is {doc['status']}")
        if doc["priority"] == priority:
            raise CannotReprioritise(f"the emergency already is {priority.value}")
        now = utcnow()
        change = {"priority": priority.value, "previous_priority": doc["priority"],
                  "reason": reason.value, "at": now, "by": principal.subject}
        await _set(uow, doc, {"$set": {"priority": priority.value, "updated_at": now},
                              "$push": {"priority_changes": change}})
        uow.publish(events.EmergencyReprioritised(
            emergency_id=doc["_id"], priority=priority.value,
            previous_priority=doc["priority"], reason=reason.value,
            reprioritised_by=principal.subject, reprioritised_at=now),
            subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))
        after = await store.get(uow.db, emergency_id, session=uow.session)
        assert after is not None
        return after

    return await runtime.transact(write, actor=principal.actor)


async def locate(runtime: ServiceRuntime, principal: Principal, emergency_id: str,
                 position: PositionIn) -> Document:
    """A dispatcher sets the incident's position (WGS84 degrees, accuracy in metres):
    one raised from an address only, which no unit could be found for, or a
    correction; ``emergency.located`` (the paramedic service assigns it then).

    Raises:
        EmergencyNotFound (404); CannotLocate (409): a crew is on scene, or it ended;
        Conflict (409): changed concurrently.
    """
    async def write(uow: UnitOfWork) -> Document:
        doc = await store.get(uow.db, emergency_id, session=uow.session)
        if doc is None:
            raise EmergencyNotFound(f"no emergency {emergency_id}")
        if doc["status"] not in LOCATABLE:
            raise CannotLocate(f"the emergency is {doc['status']}: its position is final")
        now = utcnow()
        await _set(uow, doc, {"$set": {
            "position": position.model_dump(), "updated_at": now,
            "location": geo_point(position.latitude, position.longitude)}})
        uow.publish(events.EmergencyLocated(
            emergency_id=doc["_id"], latitude=position.latitude,
            longitude=position.longitude, accuracy_m=position.accuracy_m,
            located_by=principal.subject, located_at=now),
            subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))
        after = await store.get(uow.db, emergency_id, session=uow.session)
        assert after is not None
        return after

    return await runtime.transact(write, actor=principal.actor)


# --------------------------------------------------------------------------- from paramedic
#
# The paramedic service's events arrive in any order: the broker delivers up to
# ``prefetch`` at once and a delivery that fails is retried after a delay, behind
# later ones. So each handler decides from what the event says, never from having
# seen the one before it:
#
# * ``sequence`` orders offers and escalations of one emergency: offer ``a`` is 2·a,
#   an escalation after ``n`` offers 2·n + 1 (it comes after offer n ended and
#   before offer n + 1). Anything not above the highest seen is stale.
# * ``ended_tasks`` holds the tasks declined or timed out, so an offer delivered
#   after its own decline does not assign the emergency to it.
# * An acceptance names the one live task (a unit accepts only a current offer), so
#   it is taken even before its offer arrives, and an accepted assignment is never
#   displaced by an offer.


def _sequence(doc: Document) -> int:
    return int(doc.get("sequence") or 0)


async def _set(uow: UnitOfWork, doc: Document, update: Document) -> None:
    if not await store.update(uow.db, uow.session, doc, update):
        raise Conflict("the emergency changed concurrently")


async def _assign(uow: UnitOfWork, doc: Document, assignment: Document,
                  sequence: int | None = None, eta: Document | None = None,
                  also: Document | None = None) -> None:
    """Record ``assignment`` (``raised`` → ``assigned``, with the offer's ``eta``; a
    dispatcher's (re)assignment is always a timeline step, in their name);
    ``emergency.assigned``."""
    extra: Document = {"assignment": assignment, "escalated": None}
    if sequence is not None:
        extra["sequence"] = sequence
    if eta is not None:
        extra["eta"] = eta
    by = assignment.get("assigned_by")
    if doc["status"] == Status.RAISED or by:
        await _move(uow, doc, Status.ASSIGNED, "dispatcher" if by else SYSTEM, by or SYSTEM,
                    extra, also)
    else:
        await _set(uow, doc, {**(also or {}), "$set": extra})
    uow.publish(events.EmergencyAssigned(
        emergency_id=doc["_id"], priority=doc["priority"], task_id=assignment["task_id"],
        unit_id=assignment["unit_id"], paramedic_id=assignment["paramedic_id"],
        assigned_at=assignment["offered_at"] or assignment["accepted_at"]),
        subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))


async def on_task_offered(uow: UnitOfWork, data: TaskOffered) -> None:
    """A unit was offered the task: ``raised`` → ``assigned`` (or the next unit while
    ``assigned``); ``emergency.assigned``. Ignored once the crew is under way, and
    when stale (see above) — except a dispatcher's reassignment (``assigned_by``),
    which displaces even an accepted unit on its way (``en_route`` → ``assigned``).
    A P1's second unit: :mod:`.crews`."""
    if crews.is_second(data):
        return await crews.on_offered(uow, data)
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    manual = data.assigned_by is not None
    if doc is None or doc["status"] in FINAL or (
            doc["status"] not in ((Status.RAISED, Status.ASSIGNED)
                                  + ((Status.EN_ROUTE,) if manual else ()))
            and not (crews.second_accepted(doc) and not manual)):
        return  # (slot 1 still joins a P1 the second crew has moved on)
    current = doc.get("assignment") or {}
    if current.get("task_id") == data.task_id:  # its acceptance came first
        if current.get("offered_at") is None:
            await _set(uow, doc, {"$set": {"assignment.offered_at": data.offered_at}})
        return
    if (2 * data.attempt <= _sequence(doc) or (current.get("accepted_at") and not manual)
            or data.task_id in (doc.get("ended_tasks") or [])):
        return
    displaced = current.get("paramedic_id")
    also = ({"$addToSet": {"withdrawn_crews": displaced}} if manual and displaced
            and displaced != data.paramedic_id else None)
    await _assign(uow, doc, {
        "task_id": data.task_id, "unit_id": data.unit_id, "paramedic_id": data.paramedic_id,
        "call_sign": data.call_sign, "offered_at": data.offered_at,
        "accepted_at": (doc.get("early_acceptances") or {}).get(data.task_id),
        "assigned_by": data.assigned_by, "reason": data.reason},
        sequence=2 * data.attempt,
        eta={"task_id": data.task_id, "travel_s": data.travel_s, "by_road": data.by_road,
             "distance_m": data.distance_m, "computed_at": data.offered_at}, also=also)


async def on_task_accepted(uow: UnitOfWork, data: TaskAccepted) -> None:
    """The crew accepted: it may now set off. Taken even before its offer arrives (kept
    aside when a dispatcher's reassignment will displace the current unit)."""
    if crews.is_second(data):
        if await crews.on_accepted(uow, data):  # slot 1 has no unit: the second is it
            doc = await store.get(uow.db, data.emergency_id, session=uow.session)
            assert doc is not None
            await _move(uow, doc, Status.ASSIGNED, SYSTEM, SYSTEM)
        return None
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if doc is None:
        return
    current = doc.get("assignment") or {}
    if current.get("task_id") == data.task_id:
        if current.get("accepted_at") is None:
            await _set(uow, doc, {"$set": {"assignment.accepted_at": data.accepted_at}})
        return
    joinable = doc["status"] in (Status.RAISED, Status.ASSIGNED) or crews.second_accepted(doc)
    if not joinable or current.get("accepted_at"):
        if doc["status"] not in FINAL:  # a reassignment's, ahead of its offer
            await _set(uow, doc, {"$set": {f"early_acceptances.{data.task_id}":
                                           data.accepted_at}})
        return
    await _assign(uow, doc, {"task_id": data.task_id, "unit_id": data.unit_id,
                             "paramedic_id": data.paramedic_id, "offered_at": None,
                             "accepted_at": data.accepted_at})


async def on_task_declined(uow: UnitOfWork, data: TaskDeclined) -> None:
    """The offered unit declined or did not answer: back to ``raised`` if it was the
    current offer; remembered, so that its offer arriving later changes nothing. A
    dispatcher's reassignment (``reassigned``) takes it from an accepted crew too while
    assigned or en route (that crew's later steps are 409 ``crew-reassigned``); past en
    route the crew's step came first and keeps it."""
    if crews.is_second(data):
        return await crews.on_declined(uow, data)
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    if doc is None:
        return
    current = doc.get("assignment") or {}
    reassigned = (data.reason == "reassigned" and current.get("task_id") == data.task_id
                  and doc["status"] in (Status.ASSIGNED, Status.EN_ROUTE))
    remember = {"$addToSet": {"ended_tasks": data.task_id} | (
        {"withdrawn_crews": data.paramedic_id} if reassigned else {})}
    mine = current.get("task_id") == data.task_id and (
        not current.get("accepted_at") or reassigned)
    if (doc["status"] in (Status.ASSIGNED, Status.EN_ROUTE) and mine
            and not crews.second_accepted(doc)):
        await _move(uow, doc, Status.RAISED, SYSTEM, SYSTEM, {"assignment": None},
                    also=remember)
    elif mine and doc["status"] not in FINAL:  # the second crew holds the emergency
        await _set(uow, doc, {**remember, "$set": {"assignment": None}})
    elif doc["status"] in (Status.RAISED, Status.ASSIGNED):
        await _set(uow, doc, remember)


async def on_escalated(uow: UnitOfWork, data: AssignmentEscalated) -> None:
    """No unit could be offered it: flag it on the dispatchers' board (and drop an
    offer it outdates whose decline has not arrived yet)."""
    if crews.is_second(data):
        return await crews.on_escalated(uow, data)
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    sequence = 2 * data.attempts + 1
    if (doc is None or doc["status"] in FINAL or sequence <= _sequence(doc)
            or (doc.get("assignment") or {}).get("accepted_at")):
        return
    flag = {"escalated": {"reason": data.reason, "at": data.escalated_at},
            "sequence": sequence}
    if crews.second_accepted(doc):  # slot 1 waits on; the second crew holds it
        await _set(uow, doc, {"$set": {"assignment": None, **flag}})
    elif doc["status"] == Status.ASSIGNED:
        await _move(uow, doc, Status.RAISED, SYSTEM, SYSTEM, {"assignment": None, **flag})
    elif doc["status"] == Status.RAISED:
        await _set(uow, doc, {"$set": flag})


async def on_eta_updated(uow: UnitOfWork, data: EtaUpdated) -> None:
    """A crew on its way reported a position: its new ETA (and call sign) replace the
    held one. Ignored when the task is none of the emergency's crews, the crew is past
    ``en_route``, the held ETA is its own from a later position report, or it is the
    other accepted crew's of a P1 and that one arrives first (:func:`.crews.eta_applies`)."""
    eta = {"task_id": data.task_id, "travel_s": data.travel_s, "by_road": data.by_road,
           "distance_m": data.distance_m, "computed_at": data.reported_at}
    doc = await store.get(uow.db, data.emergency_id, session=uow.session)
    path = (crews.eta_applies(doc, data.task_id, eta) if doc is not None
            and doc["status"] in (Status.ASSIGNED, Status.EN_ROUTE) else None)
    if path is None or not await store.set_eta(
            uow.db, uow.session, data.emergency_id, path, data.task_id, data.call_sign,
            (doc or {}).get("eta"), eta):
        log.debug("eta not applied (stale, or not a crew's task)",
                  extra={"emergency_id": data.emergency_id, "task_id": data.task_id})
