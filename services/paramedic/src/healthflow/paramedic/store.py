"""Collections, indexes and queries of the paramedic service.

Collections (database ``healthflow_paramedic``), times aware UTC, distances metres::

    units        {_id: paramedic's or radiographer's user id, call_sign, vehicle,
                  qualifications[], base{name, latitude, longitude}, takes_emergencies
                  (false: a radiographer's, X-ray orders only; absent on older units:
                  true), status (domain.DutyStatus), location: GeoJSON Point
                  [lon, lat] | None, accuracy_m, position_at, task_id | None, created_at,
                  updated_at, task_kind: the task's kind (emergency | xray) | None}
    tasks        {_id, kind (domain.TaskKind), assignment_id, emergency_id | None,
                  unit_id, paramedic_id, priority, location (Point) | None, distance_m,
                  attempt, status (domain.TaskStatus), emergency_status, offered_at,
                  expires_at, answered_at, updated_at; X-ray: order_id,
                  accession_number, body_part, view}
    assignments  {_id: emergency id | "xray:<order id>", kind, priority, location | None,
                  status: pending (waits for the assigner) | assigning | offered |
                  accepted | escalated (X-ray: queued) | ended, tried: [unit ids],
                  attempts, task_id, escalated_at | None, created_at, updated_at;
                  X-ray: order_id, accession_number, body_part, view}
    jobs         the offer timers and escalation retries (healthflow.common.jobs)

``units.location`` has a 2dsphere index; :func:`candidates` is a ``$geoNear``
(SecantusDB supports it, with its ``query`` and ``maxDistance``; checked by the
integration tests).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import jobs
from healthflow.common.mongo import Document, Indexes, geo_index
from healthflow.paramedic.domain import DutyStatus

UNITS = "units"
TASKS = "tasks"
ASSIGNMENTS = "assignments"

INDEXES: Indexes = {
    UNITS: [geo_index("location"),
            IndexModel([("status", ASCENDING), ("position_at", ASCENDING)], name="status")],
    TASKS: [IndexModel([("paramedic_id", ASCENDING), ("offered_at", DESCENDING)],
                       name="paramedic"),
            IndexModel([("emergency_id", ASCENDING)], name="emergency")],
    ASSIGNMENTS: [IndexModel([("status", ASCENDING), ("updated_at", ASCENDING)],
                             name="status"),
                  IndexModel([("status", ASCENDING), ("kind", ASCENDING),
                              ("priority", ASCENDING), ("created_at", ASCENDING)],
                             name="waiting")],  # waiting.WAITING_ORDER
    **jobs.INDEXES,
}

Db = AsyncDatabase[Document]
Session = AsyncClientSession | None


async def get_unit(db: Db, unit_id: str, session: Session = None) -> Document | None:
    return await db[UNITS].find_one({"_id": unit_id}, session=session)


async def list_units(db: Db, limit: int = 500) -> list[Document]:
    return await db[UNITS].find({}).sort("call_sign", ASCENDING).limit(limit).to_list()


async def get_task(db: Db, task_id: str, session: Session = None) -> Document | None:
    return await db[TASKS].find_one({"_id": task_id}, session=session)


async def tasks_of(db: Db, paramedic_id: str, limit: int = 50) -> list[Document]:
    """The paramedic's tasks, newest offer first."""
    return await db[TASKS].find({"paramedic_id": paramedic_id}).sort(
        "offered_at", DESCENDING).limit(limit).to_list()


async def open_tasks_of(db: Db, paramedic_id: str) -> list[Document]:
    """The paramedic's tasks still offered or accepted, oldest first."""
    return await db[TASKS].find({"paramedic_id": paramedic_id,
                                 "status": {"$in": ["offered", "accepted"]}}).sort(
        "offered_at", ASCENDING).to_list()


def watch_tasks(db: Db, paramedic_id: str) -> Any:
    """A change stream (awaitable, then an async context manager) of the paramedic's
    tasks: every insert and update, with the whole document after the change."""
    pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]},
                            "fullDocument.paramedic_id": paramedic_id}}]
    return db[TASKS].watch(pipeline, full_document="updateLookup")


async def touch_stream(db: Db, unit_id: str, now: datetime) -> None:
    """Record that the unit's app holds its task stream open at ``now``."""
    await db[UNITS].update_one({"_id": unit_id}, {"$set": {"stream_seen_at": now}})


async def get_assignment(db: Db, emergency_id: str, session: Session = None
                         ) -> Document | None:
    return await db[ASSIGNMENTS].find_one({"_id": emergency_id}, session=session)


async def candidates(db: Db, session: Session, location: Document, *, fresh_since: datetime,
                     exclude: list[str], max_distance_m: float, limit: int,
                     preempt_xray: bool = False) -> list[Document]:
    """Available units that take emergencies (not a radiographer's: ``takes_emergencies``
    false; units put before it existed take them) with a position reported at or after
    ``fresh_since``, within
    ``max_distance_m`` metres of ``location`` (GeoJSON Point), nearest first, each with
    ``distance_m`` (great-circle metres, from ``$geoNear``) and ``location``.
    ``preempt_xray`` (a P1): units busy with an X-ray task count too (``task_kind``
    ``xray``; :func:`preempt_unit` takes them)."""
    status: Document = ({"$or": [{"status": DutyStatus.AVAILABLE.value},
                                 {"task_kind": "xray"}]} if preempt_xray
                        else {"status": DutyStatus.AVAILABLE.value})
    pipeline: list[Document] = [
        {"$geoNear": {"near": location, "distanceField": "distance_m", "spherical": True,
                      "key": "location", "maxDistance": max_distance_m,
                      "query": {**status,
                                "position_at": {"$gte": fresh_since},
                                "takes_emergencies": {"$ne": False},
                                "_id": {"$nin": exclude}}}},
        {"$limit": limit},
        {"$project": {"_id": 1, "distance_m": 1, "location": 1, "call_sign": 1,
                      "shifts": 1, "time_zone": 1, "stream_seen_at": 1, "status": 1,
                      "task_id": 1, "task_kind": 1}},
    ]
    cursor = await db[UNITS].aggregate(pipeline, session=session)
    return await cursor.to_list()


async def xray_candidates(db: Db, *, fresh_since: datetime, exclude: list[str], limit: int
                          ) -> list[Document]:
    """Available units qualified in radiography with a position reported at or after
    ``fresh_since`` (the app is live), longest idle first (``updated_at``)."""
    return await db[UNITS].find(
        {"status": DutyStatus.AVAILABLE.value, "position_at": {"$gte": fresh_since},
         "qualifications": "radiography", "_id": {"$nin": exclude}},
        {"_id": 1, "location": 1, "call_sign": 1, "shifts": 1, "time_zone": 1,
         "stream_seen_at": 1}).sort("updated_at", ASCENDING).limit(limit).to_list()


async def xray_queue(db: Db, limit: int = 200) -> list[Document]:
    """X-ray orders not ended yet (waiting, offered or accepted), oldest first."""
    return await db[ASSIGNMENTS].find(
        {"kind": "xray", "status": {"$ne": "ended"}}).sort(
        "created_at", ASCENDING).limit(limit).to_list()


async def still_available(db: Db, unit_ids: list[str], *, fresh_since: datetime,
                          preempt_xray: bool = False) -> set[str]:
    """Which of ``unit_ids`` are still available (or, ``preempt_xray``, on an X-ray
    task) with a position reported at or after ``fresh_since`` (read outside any
    transaction: a hint; the claim decides)."""
    status: Document = ({"$or": [{"status": DutyStatus.AVAILABLE.value},
                                 {"task_kind": "xray"}]} if preempt_xray
                        else {"status": DutyStatus.AVAILABLE.value})
    return {d["_id"] async for d in db[UNITS].find(
        {"_id": {"$in": unit_ids}, **status, "position_at": {"$gte": fresh_since}},
        {"_id": 1})}


async def claim_unit(db: Db, session: Session, unit_id: str, *, fresh_since: datetime,
                     task_id: str, now: datetime, kind: str = "emergency") -> bool:
    """Make the unit ``assigned`` to ``task_id`` (of ``kind``, kept as ``task_kind``) if
    it is still available with a fresh position: one conditional update, so of any
    number of concurrent claims (on any replica) exactly one matches."""
    result = await db[UNITS].update_one(
        {"_id": unit_id, "status": DutyStatus.AVAILABLE.value,
         "position_at": {"$gte": fresh_since}},
        {"$set": {"status": DutyStatus.ASSIGNED.value, "task_id": task_id,
                  "task_kind": kind, "updated_at": now}}, session=session)
    return result.modified_count == 1


async def preempt_unit(db: Db, session: Session, unit_id: str, *, xray_task_id: str,
                       fresh_since: datetime, task_id: str, now: datetime) -> bool:
    """Give a P1's ``task_id`` to the unit if it still works the X-ray task
    ``xray_task_id`` with a fresh position (the same single conditional update as
    :func:`claim_unit`); the caller ends the X-ray task."""
    result = await db[UNITS].update_one(
        {"_id": unit_id, "task_id": xray_task_id, "task_kind": "xray",
         "position_at": {"$gte": fresh_since}},
        {"$set": {"status": DutyStatus.ASSIGNED.value, "task_id": task_id,
                  "task_kind": "emergency", "updated_at": now}}, session=session)
    return result.modified_count == 1


async def set_unit_status(db: Db, session: Session, unit_id: str, task_id: str,
                          status: DutyStatus, now: datetime) -> bool:
    """Move the unit working ``task_id`` to ``status`` (``available`` frees it)."""
    fields: dict[str, Any] = {"status": status.value, "updated_at": now}
    if status is DutyStatus.AVAILABLE:
        fields["task_id"] = fields["task_kind"] = None
    result = await db[UNITS].update_one({"_id": unit_id, "task_id": task_id},
                                        {"$set": fields}, session=session)
    return result.modified_count == 1


async def retake_unit(db: Db, session: Session, unit_id: str, task_id: str,
                      status: DutyStatus, now: datetime) -> bool:
    """Give the unit back ``task_id`` at duty ``status`` if it is still available (a
    reassignment it won after all, :mod:`.lifecycle`); False when it is not."""
    result = await db[UNITS].update_one(
        {"_id": unit_id, "status": DutyStatus.AVAILABLE.value},
        {"$set": {"status": status.value, "task_id": task_id, "task_kind": "emergency",
                  "updated_at": now}}, session=session)
    return result.modified_count == 1


async def withdraw_task(db: Db, session: Session, task_id: str, expected: str,
                        on_the_way: list[str], fields: Document) -> bool:
    """Set ``fields`` on the task if it is still ``expected`` and its emergency still
    ``on_the_way`` (a crew step that moved it on first wins: False)."""
    result = await db[TASKS].update_one(
        {"_id": task_id, "status": expected,
         "$or": [{"emergency_status": {"$in": on_the_way}}, {"emergency_status": None}]},
        {"$set": fields}, session=session)
    return result.matched_count == 1


async def update_task(db: Db, session: Session, task_id: str, expected: str | None,
                      fields: Document) -> bool:
    """Set ``fields`` on the task if its status is ``expected`` (any when ``None``)."""
    query: Document = {"_id": task_id}
    if expected is not None:
        query["status"] = expected
    result = await db[TASKS].update_one(query, {"$set": fields}, session=session)
    return result.matched_count == 1


async def move_unit(db: Db, session: Session, unit_id: str, location: Document,
                    accuracy_m: float, reported_at: datetime) -> bool:
    """Store the unit's position if ``reported_at`` is newer than the stored one (reports
    may overtake each other); False when it is not (the report is ignored)."""
    result = await db[UNITS].update_one(
        {"_id": unit_id, "$or": [{"position_at": None},
                                 {"position_at": {"$lt": reported_at}}]},
        {"$set": {"location": location, "accuracy_m": accuracy_m,
                  "position_at": reported_at}}, session=session)
    return result.matched_count == 1


async def mark_eta_published(db: Db, session: Session, task_id: str,
                             last: Document | None, published: Document) -> bool:
    """Record ``published`` (``{travel_s, reported_at}``) as the task's last published
    ETA if it still is ``last`` (``None``: none yet) and the task is accepted; False when
    another report won the race (then this one is not published)."""
    query: Document = {"_id": task_id, "status": "accepted"}
    query["eta_published.reported_at"] = None if last is None else last["reported_at"]
    result = await db[TASKS].update_one(query, {"$set": {"eta_published": published}},
                                        session=session)
    return result.matched_count == 1


async def pending_again(db: Db, session: Session, emergency_id: str, task_id: str,
                        now: datetime) -> bool:
    """The emergency whose current offer ``task_id`` ended waits for a unit again
    (False when that offer was no longer current: accepted elsewhere, reassigned)."""
    result = await db[ASSIGNMENTS].update_one(
        {"_id": emergency_id, "status": "offered", "task_id": task_id},
        {"$set": {"status": "pending", "task_id": None, "updated_at": now}},
        session=session)
    return result.matched_count == 1


async def start_assigning(db: Db, session: Session, emergency_id: str, attempts: int,
                          now: datetime) -> Document | None:
    """Take the ``pending`` assignment as it was ranked (``attempts``) for this
    transaction; None when it moved on meanwhile (another replica offered it, a
    dispatcher assigned it, the emergency ended). One conditional update, so of two
    replicas assigning it at once one goes on."""
    return await db[ASSIGNMENTS].find_one_and_update(
        {"_id": emergency_id, "status": "pending", "attempts": attempts},
        {"$set": {"status": "assigning", "updated_at": now}}, session=session,
        return_document=ReturnDocument.AFTER)


async def update_assignment(db: Db, session: Session, emergency_id: str, update: Document
                            ) -> bool:
    """Apply ``update`` to the emergency's assignment; False when there is none."""
    result = await db[ASSIGNMENTS].update_one({"_id": emergency_id}, update, session=session)
    return result.matched_count == 1
