"""Collections, indexes and queries of the appointment service.

* ``appointments`` — one document per appointment (see :func:`new_appointment`).
* ``slot_locks`` — ``{party: "doctor"|"patient", party_id, unit_start, appointment_id}``,
  one per 5-minute unit an active appointment covers, for its doctor and its
  patient. The unique index on ``(party, party_id, unit_start)`` is the
  double-booking guarantee: locks are inserted in the same transaction as the
  appointment, deleted in the same transaction as a cancellation, swapped in
  the same transaction as a reschedule. Two overlapping active appointments
  would need two equal keys, which the index refuses (``DuplicateKeyError``),
  whatever the interleaving of requests or processes.
* ``doctor_schedules`` — the local availability read model (``_id`` = doctor id).
* ``staff_memberships`` — who works where (:mod:`healthflow.common.tenancy`).
* ``patient_booking_guards`` — ``{_id: patient_id, bookings}``: a patient's booking
  transaction writes it before counting their upcoming appointments
  (:func:`count_upcoming`), so two concurrent bookings of one patient conflict (one is
  retried and counts the other) and the cap cannot be overshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.appointment.availability import (
    Availability,
    Interval,
    availability_from_document,
    availability_to_document,
)
from healthflow.appointment.domain import ACTIVE, lock_units
from healthflow.common import tenancy
from healthflow.common.mongo import Document
from healthflow.common.pagination import keyset_page

APPOINTMENTS = "appointments"
SLOT_LOCKS = "slot_locks"
DOCTOR_SCHEDULES = "doctor_schedules"
PATIENT_BOOKING_GUARDS = "patient_booking_guards"

INDEXES = {
    SLOT_LOCKS: [
        IndexModel(
            [("party", ASCENDING), ("party_id", ASCENDING), ("unit_start", ASCENDING)],
            unique=True,
            name="one_holder_per_unit",
        ),
        IndexModel([("appointment_id", ASCENDING)]),
    ],
    APPOINTMENTS: [
        IndexModel([("doctor_id", ASCENDING), ("start", ASCENDING)]),
        IndexModel([("doctor_user_id", ASCENDING), ("start", ASCENDING)]),
        IndexModel([("patient_id", ASCENDING), ("start", ASCENDING)]),
        IndexModel([("start", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("hospital_ids", ASCENDING), ("start", ASCENDING)]),
    ],
    DOCTOR_SCHEDULES: [IndexModel([("doctor_user_id", ASCENDING)])],
    **tenancy.INDEXES,
}

Db = AsyncDatabase[Document]


def lock_documents(appointment_id: str, doctor_id: str, patient_id: str,
                   start: datetime, end: datetime) -> list[Document]:
    """The lock documents of an appointment (doctor and patient, one per unit)."""
    docs: list[Document] = []
    for unit in lock_units(start, end):
        for party, party_id in (("doctor", doctor_id), ("patient", patient_id)):
            docs.append({"party": party, "party_id": party_id, "unit_start": unit,
                         "appointment_id": appointment_id})
    return docs


async def take_locks(db: Db, session: AsyncClientSession, appointment: Document) -> None:
    """Insert the appointment's locks (raises ``DuplicateKeyError`` on any overlap)."""
    await db[SLOT_LOCKS].insert_many(
        lock_documents(appointment["_id"], appointment["doctor_id"], appointment["patient_id"],
                       appointment["start"], appointment["end"]),
        ordered=True,
        session=session,
    )


async def guard_patient_bookings(db: Db, session: AsyncClientSession, patient_id: str) -> None:
    """Write the patient's guard document in this transaction: concurrent bookings of the
    same patient now conflict on it (MongoDB write conflict: one is retried)."""
    await db[PATIENT_BOOKING_GUARDS].update_one(
        {"_id": patient_id}, {"$inc": {"bookings": 1}}, upsert=True, session=session)


async def count_upcoming(db: Db, session: AsyncClientSession, patient_id: str,
                         now: datetime) -> int:
    """Active appointments of ``patient_id`` starting after ``now`` (cancelled, completed,
    no-show and past ones do not count)."""
    return await db[APPOINTMENTS].count_documents(
        {"patient_id": patient_id, "start": {"$gt": now},
         "status": {"$in": [s.value for s in ACTIVE]}}, session=session)


async def release_locks(db: Db, session: AsyncClientSession, appointment_id: str) -> int:
    result = await db[SLOT_LOCKS].delete_many({"appointment_id": appointment_id},
                                              session=session)
    return result.deleted_count


async def get_schedule(db: Db, doctor_id: str,
                       session: AsyncClientSession | None = None) -> Availability | None:
    doc = await db[DOCTOR_SCHEDULES].find_one({"_id": doctor_id}, session=session)
    return availability_from_document(doc) if doc else None


async def get_schedule_by_user(db: Db, user_id: str) -> Availability | None:
    doc = await db[DOCTOR_SCHEDULES].find_one({"doctor_user_id": user_id})
    return availability_from_document(doc) if doc else None


async def save_schedule(db: Db, session: AsyncClientSession, availability: Availability) -> bool:
    """Store ``availability`` unless a newer one is stored; returns whether it was stored.

    Newer means a higher ``version`` (the doctor profile's revision), or, for
    payloads without one, a later event time.
    """
    current = await get_schedule(db, availability.doctor_id, session=session)
    if current is not None and not availability.is_newer_than(current):
        return False
    await db[DOCTOR_SCHEDULES].replace_one(
        {"_id": availability.doctor_id}, availability_to_document(availability),
        upsert=True, session=session,
    )
    return True


async def taken_intervals(db: Db, doctor_id: str, start: datetime, end: datetime
                          ) -> list[Interval]:
    """Active appointments of ``doctor_id`` overlapping ``[start, end)`` (aware UTC).

    Served by the (doctor_id, start) index; no appointment lasts a day, so the
    scan starts one day before ``start`` whatever the doctor's history.
    """
    cursor = db[APPOINTMENTS].find(
        {"doctor_id": doctor_id, "start": {"$gt": start - timedelta(days=1), "$lt": end},
         "end": {"$gt": start}, "status": {"$in": [s.value for s in ACTIVE]}},
        {"start": 1, "end": 1},
    )
    return [Interval(d["start"], d["end"]) async for d in cursor]


async def get_appointment(db: Db, appointment_id: str,
                          session: AsyncClientSession | None = None) -> Document | None:
    return await db[APPOINTMENTS].find_one({"_id": appointment_id}, session=session)


async def list_appointments(db: Db, query: Document, *, cursor: str | None,
                            limit: int) -> tuple[list[Document], str | None]:
    """One page of appointments matching ``query`` ordered by (start, _id), and the next cursor.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    return await keyset_page(db[APPOINTMENTS], query, sort=["start", "_id"], cursor=cursor,
                             limit=limit)


async def adopt_hospitals(db: Db) -> int:
    """Give appointments booked before issue 16 their ``hospital_ids`` (the location's
    hospital in person, else the doctor's hospitals as the stored schedule knows them), so
    the staff of those hospitals keep seeing them. Returns how many it changed; run at start
    (a no-op once every appointment has the field)."""
    changed = 0
    async for doc in db[APPOINTMENTS].find({"hospital_ids": {"$exists": False}},
                                           {"doctor_id": 1, "location_id": 1, "mode": 1}):
        if doc.get("mode") == "in_person" and doc.get("location_id"):
            hospital_ids = [doc["location_id"]]
        else:
            schedule = await get_schedule(db, doc["doctor_id"])
            hospital_ids = list(schedule.hospital_ids) if schedule else []
        result = await db[APPOINTMENTS].update_one(
            {"_id": doc["_id"], "hospital_ids": {"$exists": False}},
            {"$set": {"hospital_ids": hospital_ids}})
        changed += result.modified_count
    return changed
