"""Collections, indexes and queries of the emergency service.

Collections (database ``healthflow_emergency``), times aware UTC::

    emergencies {_id, status (domain.Status), priority (P1–P4), triage{answers},
                 position{latitude, longitude, accuracy_m} | None, location (GeoJSON
                 Point [lon, lat]) | None, address, what_happened, caller_phone,
                 raised_by, raised_by_role, patient_id, assignment{task_id, unit_id,
                 paramedic_id, call_sign, assigned_by, reason, offered_at, accepted_at}
                 | None, early_acceptances{task id: accepted_at}, eta{task_id,
                 travel_s, by_road, distance_m, computed_at} | None, escalated{reason, at} |
                 None, cancel_reason, destination{hospital_id, name, department_id,
                 department, distance_m, chosen_at} | None, timeline[{status, at,
                 by_role, by}], sequence (orders the paramedic service's offers and
                 escalations; service.py), ended_tasks[task ids declined or timed
                 out], request_fingerprint (SHA-256 of a raise with an Idempotency-Key,
                 whose id is then derived from it: raising.raise_id) | None,
                 photos[{id, content_type, width, height, blob{key, sha256, size},
                 uploaded_by, uploaded_at}] (photos.py; absent: none), version,
                 created_at, updated_at}
    raisers     {_id: user id, raises: n}: written by every patient's raise, so two
                 concurrent raises by one patient conflict and see each other
    hospitals   read model of ``hospital.*`` {_id: hospital id, version (0 while only
                 departments are known), name, status, location (GeoJSON Point) | None,
                 department_services[codes of its departments]}
    departments read model of ``department.created`` {_id, hospital_id, services}
    staff       read model of ``staff.assigned`` {_id: membership id, hospital_id,
                 department_id | None, user_id, staff_role}
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.mongo import Document, Indexes, geo_index
from healthflow.emergency.domain import FINAL, Status

EMERGENCIES = "emergencies"
RAISERS = "raisers"  # {_id: user id, raises: n}: serialises one patient's raises
HOSPITALS = "hospitals"
DEPARTMENTS = "departments"
STAFF = "staff"
RECEIVING_ROLES = ("doctor", "nurse")

INDEXES: Indexes = {
    EMERGENCIES: [
        IndexModel([("status", ASCENDING), ("priority", ASCENDING), ("created_at", ASCENDING)],
                   name="board"),
        IndexModel([("raised_by", ASCENDING), ("created_at", ASCENDING)], name="raised_by"),
        geo_index("location"),
    ],
    HOSPITALS: [geo_index("location")],
    DEPARTMENTS: [IndexModel([("hospital_id", ASCENDING)], name="hospital")],
    STAFF: [IndexModel([("hospital_id", ASCENDING), ("department_id", ASCENDING)],
                       name="hospital_department")],
}

Db = AsyncDatabase[Document]


async def get(db: Db, emergency_id: str, session: AsyncClientSession | None = None
              ) -> Document | None:
    return await db[EMERGENCIES].find_one({"_id": emergency_id}, session=session)


async def insert(db: Db, session: AsyncClientSession, doc: Document) -> None:
    await db[EMERGENCIES].insert_one(doc, session=session)


async def open_raised_by(db: Db, session: AsyncClientSession, user_id: str
                         ) -> Document | None:
    """The emergency ``user_id`` raised that is not closed or cancelled yet, if any.

    Call :func:`serialise_raiser` first in the same transaction: two concurrent raises
    by one user then conflict on that document and the retry sees the other's."""
    return await db[EMERGENCIES].find_one(
        {"raised_by": user_id, "status": {"$nin": [s.value for s in FINAL]}},
        {"_id": 1}, session=session)


async def serialise_raiser(db: Db, session: AsyncClientSession, user_id: str) -> None:
    await db[RAISERS].update_one({"_id": user_id}, {"$inc": {"raises": 1}}, upsert=True,
                                 session=session)


async def open_board(db: Db, limit: int = 500) -> list[Document]:
    """Emergencies not closed or cancelled, by priority (P1 first), then oldest first."""
    return await db[EMERGENCIES].find({"status": {"$nin": [s.value for s in FINAL]}}).sort(
        [("priority", ASCENDING), ("created_at", ASCENDING)]).limit(limit).to_list()


async def update(db: Db, session: AsyncClientSession, doc: Document, update: Document
                 ) -> bool:
    """Apply ``update`` (plus a version bump) if ``doc`` is unchanged since it was read."""
    update = {**update, "$inc": {"version": 1}}
    result = await db[EMERGENCIES].update_one({"_id": doc["_id"], "version": doc["version"]},
                                              update, session=session)
    return result.matched_count == 1


async def set_eta(db: Db, session: AsyncClientSession, emergency_id: str, path: str,
                  task_id: str, call_sign: str, held: Document | None, eta: Document
                  ) -> bool:
    """Replace the ETA ``held`` (as read) by ``eta``, and the call sign of the crew at
    ``path`` (``assignment`` or ``second.assignment``, whose task must still be
    ``task_id``), while the emergency is assigned or en route; False when not applied.
    (No version bump: the ETA changes every few seconds and must not make the crew's
    status change conflict; the update is conditional on the held ETA instead.)"""
    result = await db[EMERGENCIES].update_one(
        {"_id": emergency_id, "eta": held, f"{path}.task_id": task_id,
         "status": {"$in": [Status.ASSIGNED.value, Status.EN_ROUTE.value]}},
        {"$set": {"eta": eta, f"{path}.call_sign": call_sign}}, session=session)
    return result.matched_count == 1


async def photo_keys(db: Db, keys: list[str]) -> set[str]:
    """Those of the blob ``keys`` some emergency's photo references (the orphan sweep)."""
    docs = await db[EMERGENCIES].find({"photos.blob.key": {"$in": keys}},
                                      {"photos.blob.key": 1}).to_list()
    return {p["blob"]["key"] for d in docs for p in d.get("photos") or []} & set(keys)


def watch(db: Db, emergency_id: str) -> Any:
    """A change stream (awaitable, then an async context manager) of one emergency:
    every update, with the whole document after it."""
    return db[EMERGENCIES].watch(
        [{"$match": {"operationType": {"$in": ["update", "replace"]},
                     "documentKey._id": emergency_id}}], full_document="updateLookup")


def watch_all(db: Db) -> Any:
    """A change stream of every emergency (raised, updated), whole documents after the
    change: the dispatchers' live board."""
    return db[EMERGENCIES].watch(
        [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}],
        full_document="updateLookup")


# --------------------------------------------------------------------------- hospitals


async def put_hospital(db: Db, session: AsyncClientSession, hospital_id: str, version: int,
                       fields: Document) -> bool:
    """Set ``fields`` of the hospital's read model if ``version`` is newer than the one
    held (delivery is at-least-once and unordered); False when stale."""
    held = await db[HOSPITALS].find_one({"_id": hospital_id}, {"version": 1}, session=session)
    if held is not None and int(held.get("version") or 0) >= version:
        return False
    await db[HOSPITALS].update_one({"_id": hospital_id},
                                   {"$set": {**fields, "version": version}},
                                   upsert=True, session=session)
    return True


async def put_department(db: Db, session: AsyncClientSession, department_id: str,
                         hospital_id: str, services: list[str]) -> None:
    """Record a department and add its services to its hospital's (a stub of version 0
    when the hospital's own event has not arrived yet)."""
    await db[DEPARTMENTS].update_one(
        {"_id": department_id}, {"$set": {"hospital_id": hospital_id, "services": services}},
        upsert=True, session=session)
    await db[HOSPITALS].update_one(
        {"_id": hospital_id},
        {"$addToSet": {"department_services": {"$each": services}},
         "$setOnInsert": {"version": 0, "status": None, "location": None}},
        upsert=True, session=session)


async def nearest_hospital(db: Db, session: AsyncClientSession, location: Document,
                           department: str, max_distance_m: float) -> Document | None:
    """The nearest verified hospital within ``max_distance_m`` metres of ``location``
    (GeoJSON Point) with a department offering ``department``, with ``distance_m``
    (great-circle metres, from ``$geoNear``); None when there is none."""
    found = await (await db[HOSPITALS].aggregate([
        {"$geoNear": {"near": location, "distanceField": "distance_m", "spherical": True,
                      "key": "location", "maxDistance": max_distance_m,
                      "query": {"status": "verified", "department_services": department}}},
        {"$limit": 1}], session=session)).to_list()
    return found[0] if found else None


async def department_offering(db: Db, session: AsyncClientSession, hospital_id: str,
                              department: str) -> Document | None:
    return await db[DEPARTMENTS].find_one({"hospital_id": hospital_id, "services": department},
                                          sort=[("_id", ASCENDING)], session=session)


async def receiving_staff(db: Db, session: AsyncClientSession, hospital_id: str,
                          department_id: str) -> list[str]:
    """User ids of the department's doctors and nurses, else the hospital's (current
    memberships only: :mod:`healthflow.common.tenancy`'s model, kept in :data:`STAFF`)."""
    for scope in ({"department_id": department_id}, {}):
        docs = await db[STAFF].find(
            {"hospital_id": hospital_id, "staff_role": {"$in": list(RECEIVING_ROLES)},
             "removed_at": None, **scope}, {"user_id": 1}, session=session).to_list()
        if docs:
            return sorted({d["user_id"] for d in docs})
    return []
