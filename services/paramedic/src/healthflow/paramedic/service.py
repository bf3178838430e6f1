"""Use cases of the paramedic service: units (profile, duty status, position), tasks
(accept, decline) and the assignment of emergencies to units.

The units live here, so the claim of a unit is one conditional update in this
service's database (:func:`store.claim_unit`): of any number of replicas offering
units at once, exactly one gets each unit. An offer's timer and an escalated
emergency's retry are jobs (:mod:`healthflow.common.jobs`) written in the offer's
transaction, so they survive a restart and fire once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.errors import Conflict
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.permissions import Permission
from healthflow.common.problems import UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.emergency import EmergencyRaised
from healthflow.paramedic import acks, events, roads, shifts, store, waiting
from healthflow.paramedic.domain import (
    ON_THE_WAY,
    DutyStatus,
    EtaThrottle,
    Qualification,
    TaskKind,
    TaskNotFound,
    TaskNotOffered,
    TaskStatus,
    UnitNotFound,
    assignable,
    assignment_of,
    check_reported_at,
    emergency_of,
    fresh_since,
    haversine_m,
    ids,
    is_xray,
    point,
    self_status_change,
    slot_id,
    slot_of,
    units_wanted,
    xray_ids,
)
from healthflow.paramedic.schemas import PositionIn, ProfileIn
from healthflow.paramedic.settings import Settings

log = logging.getLogger(__name__)

OFFER_TIMEOUT = "paramedic-offer-timeout"
ASSIGNMENT_RETRY = "paramedic-assignment-retry"
"""Job queues: ``{task_id}`` when an offer runs out; ``{emergency_id}`` to try again."""


@dataclass(frozen=True)
class Context:
    """What the use cases need besides the database: settings and a clock (aware UTC)."""

    settings: Settings
    clock: Callable[[], datetime] = field(default=utcnow)
    roads: roads.Roads = field(default_factory=lambda: roads.Roads(""))

    @property
    def max_age(self) -> timedelta:
        return timedelta(seconds=self.settings.position_max_age_s)

    @property
    def eta_throttle(self) -> EtaThrottle:
        s = self.settings
        return EtaThrottle(s.eta_change_s, s.eta_change_ratio, s.eta_interval_s)


# --------------------------------------------------------------------------- units


async def own_unit(runtime: ServiceRuntime, principal: Principal) -> Document:
    """The caller's unit. Raises UnitNotFound (404) before ``PUT /me``."""
    doc = await store.get_unit(runtime.db, principal.subject)
    if doc is None:
        raise UnitNotFound("no unit profile for this account yet: PUT /api/v1/paramedics/me")
    return doc


def is_on_shift(ctx: Context, doc: Document) -> bool:
    return shifts.on_shift(doc.get("shifts"), doc.get("time_zone"), ctx.clock())


def is_assignable(ctx: Context, doc: Document) -> bool:
    """Available, with a fresh position, and on shift (:mod:`.shifts`)."""
    return (assignable(doc["status"], doc.get("position_at"), ctx.clock(), ctx.max_age)
            and is_on_shift(ctx, doc))


async def put_profile(runtime: ServiceRuntime, principal: Principal, body: ProfileIn
                      ) -> Document:
    """Create or replace the caller's unit profile; a new unit starts ``off_duty``. It
    ``takes_emergencies`` when the caller may work emergencies
    (``emergencies:update_assigned``: paramedics); otherwise (radiographers) it is
    offered X-ray orders only, so it must be qualified in radiography.

    Raises:
        UnprocessableContent (422): shifts that overlap or leave the 15-minute grid,
            ``errors`` ``[{location: "body.shifts.<i>", message}]``; a unit that takes
            no emergencies without ``radiography`` (``body.qualifications``).
    """
    now = utcnow()
    rules = [shift.rule() for shift in body.shifts]
    if found := shifts.problems(rules, body.time_zone, now):
        raise UnprocessableContent("the shifts cannot be read unambiguously", errors=[
            {**p, "location": p["location"].replace("weekly", "body.shifts")}
            for p in found])
    takes_emergencies = principal.has(Permission.EMERGENCIES_UPDATE_ASSIGNED)
    if not takes_emergencies and Qualification.RADIOGRAPHY not in body.qualifications:
        raise UnprocessableContent(
            "a unit whose account cannot work emergencies (a radiographer's) only takes "
            "X-ray orders: it must be qualified in radiography", errors=[{
                "location": "body.qualifications", "message": "must include radiography"}])
    profile = body.model_dump(mode="json") | {"shifts": rules,
                                              "takes_emergencies": takes_emergencies}
    await runtime.db[store.UNITS].update_one(
        {"_id": principal.subject},
        {"$set": {**profile, "updated_at": now},
         "$setOnInsert": {"status": DutyStatus.OFF_DUTY.value, "location": None,
                          "accuracy_m": None, "position_at": None, "task_id": None,
                          "created_at": now}}, upsert=True)
    return await own_unit(runtime, principal)


async def set_status(runtime: ServiceRuntime, ctx: Context, principal: Principal,
                     wanted: DutyStatus) -> Document:
    """Go ``off_duty`` or ``available`` (then escalated emergencies it could serve are
    retried at once, :func:`.waiting.unit_available`). Raises UnitNotFound, UnitBusy."""
    doc = await own_unit(runtime, principal)
    self_status_change(doc["status"], wanted)
    result = await runtime.db[store.UNITS].update_one(
        {"_id": doc["_id"], "status": doc["status"]},
        {"$set": {"status": wanted.value, "updated_at": utcnow()}})
    if result.matched_count != 1:  # offered a task meanwhile
        self_status_change(DutyStatus.ASSIGNED, wanted)
    if wanted is DutyStatus.AVAILABLE and doc["status"] != wanted:
        await waiting.unit_available(runtime.db, None, doc["_id"],
                                     ctx.settings.search_radius_m, ctx.clock())
    return await own_unit(runtime, principal)


async def report_position(runtime: ServiceRuntime, ctx: Context, principal: Principal,
                          body: PositionIn) -> Document:
    """Store the unit's position if newer than the stored one (reports may overtake
    each other). While the unit is on its way to an accepted task, publish its travel
    time to the incident (``paramedic.eta_updated``; by road, else the straight line,
    :mod:`.roads`) in the same transaction — when it changed enough or the last one is
    old enough (:class:`.domain.EtaThrottle`), since each one stays in the audit log.
    A report up to ``position_max_skew_s`` ahead (the phone's clock) is stored at now.
    Raises UnitNotFound (404), StalePosition (422)."""
    now = ctx.clock()
    check_reported_at(body.reported_at, now, max_age=ctx.max_age,
                      max_skew=timedelta(seconds=ctx.settings.position_max_skew_s))
    body = body.model_copy(update={"reported_at": min(body.reported_at, now)})
    doc = await own_unit(runtime, principal)
    task, eta = await _eta_event(runtime, ctx, doc, body)

    async def write(uow: UnitOfWork) -> None:
        moved = await store.move_unit(uow.db, uow.session, doc["_id"],
                                      point(body.latitude, body.longitude), body.accuracy_m,
                                      body.reported_at)
        if moved and eta is not None and task is not None and await store.mark_eta_published(
                uow.db, uow.session, task["_id"], task.get("eta_published"),
                {"travel_s": eta.travel_s, "reported_at": eta.reported_at}):
            uow.publish(eta, subject=f"emergency/{eta.emergency_id}")

    await runtime.transact(write, actor=principal.actor)
    return await own_unit(runtime, principal)


async def _eta_event(runtime: ServiceRuntime, ctx: Context, unit: Document,
                     body: PositionIn) -> tuple[Document | None, events.EtaUpdated | None]:
    """The unit's task and the ETA event the report gives, when the unit is on its way
    to a task it accepted and the throttle lets this ETA through."""
    task = (await store.get_task(runtime.db, unit["task_id"]) if unit.get("task_id")
            else None)
    if (task is None or task["status"] != TaskStatus.ACCEPTED
            or task.get("emergency_status") not in ON_THE_WAY):
        return task, None
    lon, lat = task["location"]["coordinates"]
    [eta] = await ctx.roads.rank((lat, lon), [(unit["_id"], body.latitude, body.longitude)])
    travel_s = round(eta.seconds, 1)
    if not ctx.eta_throttle.due(task.get("eta_published"), travel_s, body.reported_at):
        return task, None
    return task, events.EtaUpdated(
        call_sign=unit["call_sign"], travel_s=travel_s, by_road=eta.by_road,
        distance_m=round(haversine_m(lat, lon, body.latitude, body.longitude), 1),
        reported_at=body.reported_at, **ids(task))


# --------------------------------------------------------------------------- tasks


async def own_task(uow: UnitOfWork, principal: Principal, task_id: str) -> Document:
    """The caller's task. Raises TaskNotFound (404), also for another unit's task."""
    doc = await store.get_task(uow.db, task_id, session=uow.session)
    if doc is None or doc["paramedic_id"] != principal.subject:
        raise TaskNotFound(f"no task {task_id} for your unit")
    return doc


async def accept(runtime: ServiceRuntime, ctx: Context, principal: Principal, task_id: str
                 ) -> Document:
    """Accept an offered task; ``paramedic.task_accepted``.

    Raises:
        TaskNotFound (404); TaskNotOffered (409): answered, expired or withdrawn.
    """
    async def write(uow: UnitOfWork) -> Document:
        task = await own_task(uow, principal, task_id)
        now = ctx.clock()
        if task["status"] != TaskStatus.OFFERED or now > task["expires_at"]:
            raise TaskNotOffered(f"the task is {task['status']}; it can no longer be accepted")
        fields = {"status": TaskStatus.ACCEPTED.value, "answered_at": now, "updated_at": now}
        if not await store.update_task(uow.db, uow.session, task_id, TaskStatus.OFFERED,
                                       fields):
            raise TaskNotOffered("the task was answered or withdrawn meanwhile")
        must(await store.update_assignment(uow.db, uow.session, assignment_of(task), {
            "$set": {"status": "accepted", "updated_at": now}}), "the assignment")
        if is_xray(task):
            uow.publish(events.XrayTaskAccepted(accepted_at=now, **xray_ids(task)),
                        subject=f"xray-order/{task['order_id']}")
        else:
            uow.publish(events.TaskAccepted(accepted_at=now, **ids(task)),
                        subject=f"emergency/{task['emergency_id']}")
        return task | fields

    return await runtime.transact(write, actor=principal.actor)


async def decline(runtime: ServiceRuntime, ctx: Context, principal: Principal, task_id: str,
                  reason: str | None = None) -> Document:
    """Decline an offered task (``reason`` is kept on the task, never published): the
    unit is available again and the next unit is offered the emergency.
    Raises TaskNotFound (404), TaskNotOffered (409)."""
    async def write(uow: UnitOfWork) -> Document:
        task = await own_task(uow, principal, task_id)
        if task["status"] != TaskStatus.OFFERED:
            raise TaskNotOffered(f"the task is {task['status']}; it can no longer be declined")
        return await _end_offer(uow, ctx, task, TaskStatus.DECLINED, "declined",
                                note=reason)

    return await runtime.transact(write, actor=principal.actor)


async def _end_offer(uow: UnitOfWork, ctx: Context, task: Document, status: TaskStatus,
                     reason: str, note: str | None = None) -> Document:
    """The offer ends unanswered (declined or timed out): free the unit, publish
    ``paramedic.task_declined`` (an X-ray task: ``paramedic.xray_task_ended``) and make
    the emergency or order ``pending`` again (the :mod:`.assigner` offers the next unit
    after this transaction)."""
    now = ctx.clock()
    fields = {"status": status.value, "answered_at": now, "updated_at": now,
              "decline_reason": note}
    if not await store.update_task(uow.db, uow.session, task["_id"], TaskStatus.OFFERED,
                                   fields):
        raise TaskNotOffered("the task was answered or withdrawn meanwhile")
    await free_unit(uow, ctx, task, now)
    if is_xray(task):
        publish_xray_ended(uow, task, reason, now)
    else:
        uow.publish(events.TaskDeclined(reason=reason, declined_at=now, **ids(task)),
                    subject=f"emergency/{task['emergency_id']}")
    await store.pending_again(uow.db, uow.session, assignment_of(task), task["_id"], now)
    return task | fields


def must(changed: bool, what: str) -> None:
    """A write that must find the document read earlier in this transaction did not:
    Conflict (409; a consumer's delivery is retried and decides again)."""
    if not changed:
        raise Conflict(f"{what} changed concurrently; retry")


async def free_unit(uow: UnitOfWork, ctx: Context, task: Document, now: datetime) -> None:
    """Make the task's unit available, if it still works that task (a unit reassigned
    meanwhile is left alone, and logged), and retry at once the escalated emergencies
    it could serve (:func:`.waiting.unit_available`)."""
    if not await store.set_unit_status(uow.db, uow.session, task["unit_id"], task["_id"],
                                       DutyStatus.AVAILABLE, now):
        log.warning("unit no longer on the task it is freed from",
                    extra={"unit_id": task["unit_id"], "task_id": task["_id"]})
        return
    await waiting.unit_available(uow.db, uow.session, task["unit_id"],
                                 ctx.settings.search_radius_m, now)


def publish_xray_ended(uow: UnitOfWork, task: Document, reason: str, now: datetime
                       ) -> None:
    uow.publish(events.XrayTaskEnded(reason=reason, ended_at=now, **xray_ids(task)),
                subject=f"xray-order/{task['order_id']}")


# --------------------------------------------------------------------------- assignment


async def on_emergency_raised(uow: UnitOfWork, ctx: Context, data: EmergencyRaised) -> None:
    """Record a newly raised emergency as ``pending`` (once per emergency; a P1 as two
    assignments, one per unit it asks for, :func:`.domain.units_wanted`): the
    :mod:`.assigner` ranks and offers it outside this transaction; one without a
    position is escalated at once."""
    if await store.get_assignment(uow.db, data.emergency_id, session=uow.session):
        return
    now = ctx.clock()
    location = (point(data.latitude, data.longitude)
                if data.latitude is not None and data.longitude is not None else None)
    wanted = units_wanted(data.priority)
    for slot in range(1, wanted + 1):
        doc: Document = {"_id": slot_id(data.emergency_id, slot),
                         "emergency_id": data.emergency_id, "slot": slot, "units": wanted,
                         "priority": data.priority, "location": location,
                         "status": "pending", "tried": [], "attempts": 0, "task_id": None,
                         "escalated_at": None, "created_at": now, "updated_at": now}
        await uow.db[store.ASSIGNMENTS].insert_one(doc, session=uow.session)
        if location is None and slot == 1:
            await escalate(uow, ctx, doc, "no_position")
        elif location is None:  # the dispatchers handle it whole
            await store.update_assignment(uow.db, uow.session, doc["_id"],
                                          {"$set": {"status": "ended"}})


async def claim_and_offer(uow: UnitOfWork, ctx: Context, assignment: Document,
                          ranked: list[Document], *, or_escalate: bool = True
                          ) -> Document | None:
    """Claim the first of ``ranked`` (candidates with ``distance_m``, ``travel_s``,
    ``by_road``, fastest first, ranked before this transaction) that a conditional
    update can still claim, and offer it the task (``paramedic.task_offered`` and an
    offer timer); when none can be, escalate (if ``or_escalate``; else the caller ranks
    again). Returns the task, or ``None``."""
    now = ctx.clock()
    since = fresh_since(now, ctx.max_age)
    for candidate in ranked:
        task_id = str(uuid.uuid4())
        if candidate.get("task_kind") == TaskKind.XRAY and candidate.get("task_id"):
            if await store.preempt_unit(uow.db, uow.session, candidate["_id"],
                                        xray_task_id=candidate["task_id"],
                                        fresh_since=since, task_id=task_id, now=now):
                await _preempted(uow, candidate["task_id"], now)
                return await offer(uow, ctx, assignment, candidate, task_id)
        elif await store.claim_unit(uow.db, uow.session, candidate["_id"], fresh_since=since,
                                    task_id=task_id, now=now,
                                    kind=assignment.get("kind", TaskKind.EMERGENCY.value)):
            return await offer(uow, ctx, assignment, candidate, task_id)
    if or_escalate:
        await escalate(uow, ctx, assignment, "no_unit_available")
    return None


async def _preempted(uow: UnitOfWork, xray_task_id: str, now: datetime) -> None:
    """A P1 took the unit working the X-ray task ``xray_task_id``: the task ends
    (``withdrawn``; ``paramedic.xray_task_ended`` ``preempted``, on the dispatchers' X-ray
    queue and in the audit log) and its order waits for the next unit (``pending``)."""
    task = await store.get_task(uow.db, xray_task_id, session=uow.session)
    if task is None or task["status"] not in (TaskStatus.OFFERED, TaskStatus.ACCEPTED):
        return
    must(await store.update_task(uow.db, uow.session, xray_task_id, task["status"], {
        "status": TaskStatus.WITHDRAWN.value, "answered_at": task.get("answered_at") or now,
        "updated_at": now}), "the X-ray task")
    publish_xray_ended(uow, task, "preempted", now)
    await uow.db[store.ASSIGNMENTS].update_one(
        {"_id": assignment_of(task), "task_id": xray_task_id,
         "status": {"$in": ["offered", "accepted"]}},
        {"$set": {"status": "pending", "task_id": None, "updated_at": now},
         "$addToSet": {"tried": task["unit_id"]}}, session=uow.session)


async def offer(uow: UnitOfWork, ctx: Context, assignment: Document, unit: Document,
                task_id: str, assigned_by: str | None = None, reason: str | None = None
                ) -> Document:
    """Offer the claimed ``unit`` (with ``distance_m``, ``travel_s``, ``by_road``) the
    emergency's task ``task_id``: the task, its timer, ``paramedic.task_offered``
    (naming the dispatcher and reason of a manual assignment, and whether the app's
    task stream was seen within two heartbeats: if not, notification sends an SMS; if
    so, an SMS follows unless the app acknowledges in time, :mod:`.acks`)."""
    now = ctx.clock()
    expires = now + timedelta(seconds=ctx.settings.offer_timeout_s)
    attempt = assignment["attempts"] + 1
    task: Document = {
        "_id": task_id, "kind": assignment.get("kind", TaskKind.EMERGENCY.value),
        "assignment_id": assignment["_id"], "unit_id": unit["_id"],
        "paramedic_id": unit["_id"], "priority": assignment["priority"],
        "location": assignment["location"], "attempt": attempt,
        "status": TaskStatus.OFFERED.value, "offered_at": now, "expires_at": expires,
        "answered_at": None, "call_sign": unit.get("call_sign"), "acknowledged_at": None,
        "sms_fallback_at": None, "updated_at": now}
    if is_xray(assignment):
        task |= {"emergency_id": None, "order_id": assignment["order_id"],
                 "accession_number": assignment["accession_number"],
                 "body_part": assignment["body_part"], "view": assignment["view"],
                 "distance_m": unit.get("distance_m"), "travel_s": None, "by_road": None}
    else:
        task |= {"emergency_id": emergency_of(assignment), "slot": slot_of(assignment),
                 "emergency_status": "assigned",
                 "distance_m": float(unit["distance_m"]), "travel_s": unit["travel_s"],
                 "by_road": unit["by_road"]}
    await uow.db[store.TASKS].insert_one(task, session=uow.session)
    must(await store.update_assignment(uow.db, uow.session, assignment["_id"], {
        "$set": {"status": "offered", "task_id": task_id, "attempts": attempt,
                 "escalated_at": None, "updated_at": now},
        "$addToSet": {"tried": unit["_id"]}}), "the assignment")
    await jobs.enqueue(uow.db, OFFER_TIMEOUT, {"task_id": task_id}, run_at=expires,
                       key=f"offer-timeout:{task_id}", session=uow.session, now=now)
    seen = unit.get("stream_seen_at")
    connected = seen is not None and seen >= now - 2 * timedelta(
        seconds=ctx.settings.stream_heartbeat_s)
    if connected:  # pushed on the stream: SMS too unless the app acknowledges in time
        await acks.schedule(uow, task, ctx.settings.ack_timeout_s, now)
    if is_xray(task):
        uow.publish(events.XrayTaskOffered(
            attempt=attempt, call_sign=unit.get("call_sign"), offered_at=now,
            expires_at=expires, stream_connected=connected, **xray_ids(task)),
            subject=f"xray-order/{task['order_id']}")
        return task
    uow.publish(events.TaskOffered(distance_m=task["distance_m"], travel_s=task["travel_s"],
                                   by_road=task["by_road"], attempt=attempt,
                                   call_sign=unit.get("call_sign"), offered_at=now,
                                   expires_at=expires, assigned_by=assigned_by,
                                   reason=reason, stream_connected=connected, **ids(task)),
                subject=f"emergency/{task['emergency_id']}")
    return task


async def escalate(uow: UnitOfWork, ctx: Context, assignment: Document, reason: str) -> None:
    """Flag the emergency for the dispatchers (once until a unit is offered it again)
    and try again later (a job)."""
    now = ctx.clock()
    first = assignment.get("escalated_at") is None
    must(await store.update_assignment(uow.db, uow.session, assignment["_id"], {
        "$set": {"status": "escalated", "task_id": None, "escalated_at": now,
                 "updated_at": now}}), "the assignment")
    if first and not is_xray(assignment):  # a waiting X-ray order is on the queue
        uow.publish(events.AssignmentEscalated(
            emergency_id=emergency_of(assignment), reason=reason,
            attempts=assignment["attempts"], escalated_at=now, slot=slot_of(assignment)),
            subject=f"emergency/{emergency_of(assignment)}")
    if reason == "no_unit_available":
        retry_at = now + timedelta(seconds=ctx.settings.escalation_retry_s)
        await jobs.enqueue(uow.db, ASSIGNMENT_RETRY, {"assignment_id": assignment["_id"]},
                           run_at=retry_at, session=uow.session, now=now,
                           key=f"retry:{assignment['_id']}:{retry_at.timestamp():.3f}")


async def on_offer_timeout(uow: UnitOfWork, ctx: Context, job: jobs.Job) -> None:
    """The offer timer: a task still offered expires and the next unit is offered."""
    task = await store.get_task(uow.db, job.payload["task_id"], session=uow.session)
    if task is not None and task["status"] == TaskStatus.OFFERED:
        await _end_offer(uow, ctx, task, TaskStatus.EXPIRED, "timeout")


async def on_assignment_retry(uow: UnitOfWork, ctx: Context, job: jobs.Job) -> None:
    """An escalated emergency's retry: ``pending`` again, every unit may be asked again
    (the :mod:`.assigner` loop takes it)."""
    assignment = await store.get_assignment(
        uow.db, job.payload.get("assignment_id") or job.payload["emergency_id"],
        session=uow.session)
    if assignment is None or assignment["status"] != "escalated":
        return
    must(await store.update_assignment(uow.db, uow.session, assignment["_id"], {
        "$set": {"tried": [], "status": "pending", "updated_at": ctx.clock()}}),
         "the assignment")
