"""Collections, indexes and queries of the records service (the repository).

Collections (database ``healthflow_records``), times aware UTC::

    encounters      {_id, patient_id, practitioner_id, appointment_id, class, status,
                     period: {start, end}, planned: {start, end} | None, reason,
                     opened_by, created_at, updated_at, version}
                    (one per appointment: unique ``appointment_id`` where it is a string)
    entries         the current version of each entry: {_id, encounter_id, patient_id,
                     resource_type, version, status, content, recorded_by, recorded_at,
                     updated_by, updated_at}
    entry_versions  every version ever written, never updated: {_id: "<entry>:<version>",
                     entry_id, patient_id, version, status, content, author, at, reason}
    care_team       the doctor↔patient care relationships (FHIR ``CareTeam`` terms), one
                     per appointment or walk-in encounter: {_id: "appointment:<id>" |
                     "encounter:<id>", doctor_user_id, patient_id, appointment_id | None,
                     encounter_id | None, status: active | inactive, period: {start,
                     end | None}, encounter_finished_at | None, as_of}; ``as_of`` is the
                     time of the newest appointment event applied (see :mod:`.care`)
    emergency_access  break-the-glass grants: {_id, doctor_user_id, patient_id, reason,
                     granted_at, expires_at}
    patients        patient ids from ``patient.registered``: {_id, registered_at}
    hospitals       read model from ``hospital.*``: {_id: hospital_id, version, status};
                     an event older than the kept ``version`` changes nothing
    patient_hospitals  the hospitals each patient belongs to: {_id: patient_id,
                     hospital_ids} (:mod:`.reach`)
    staff_memberships  who works where (:mod:`healthflow.common.tenancy`)
    documents       uploaded files: {_id, encounter_id, patient_id, category,
                     content_type, blob: {key, sha256, size}, pages | None,
                     width | None, height | None, uploaded_by, uploaded_at,
                     withdrawal: {by, at, reason} once entered in error}
                     (the bytes are in the blob store under ``blob.key``)
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import careteam, tenancy
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes
from healthflow.common.pagination import keyset_page

ENCOUNTERS = "encounters"
ENTRIES = "entries"
VERSIONS = "entry_versions"
CARE = careteam.CARE_TEAM
EMERGENCY = "emergency_access"
PATIENTS = "patients"
HOSPITALS = "hospitals"
DOCUMENTS = "documents"

INDEXES: Indexes = {
    ENCOUNTERS: [
        IndexModel([("appointment_id", ASCENDING)], name="appointment", unique=True,
                   partialFilterExpression={"appointment_id": {"$type": "string"}}),
        IndexModel([("patient_id", ASCENDING), ("created_at", ASCENDING)], name="patient"),
    ],
    ENTRIES: [
        IndexModel([("encounter_id", ASCENDING), ("recorded_at", ASCENDING)], name="encounter"),
        IndexModel([("patient_id", ASCENDING), ("recorded_at", ASCENDING)], name="patient"),
    ],
    VERSIONS: [IndexModel([("entry_id", ASCENDING), ("version", ASCENDING)], name="entry")],
    CARE: careteam.INDEXES,
    **tenancy.INDEXES,
    EMERGENCY: [IndexModel([("doctor_user_id", ASCENDING), ("patient_id", ASCENDING),
                            ("expires_at", ASCENDING)], name="pair")],
    DOCUMENTS: [
        IndexModel([("patient_id", ASCENDING), ("uploaded_at", ASCENDING), ("_id", ASCENDING)],
                   name="patient"),
        IndexModel([("blob.key", ASCENDING)], name="blob"),
    ],
}

Db = AsyncDatabase[Document]


# ----------------------------------------------------------------------------- encounters


async def get_encounter(db: Db, encounter_id: str, session: Any = None) -> Document | None:
    return await db[ENCOUNTERS].find_one({"_id": encounter_id}, session=session)


async def encounter_of_appointment(uow: UnitOfWork, appointment_id: str) -> Document | None:
    return await uow.db[ENCOUNTERS].find_one({"appointment_id": appointment_id},
                                             session=uow.session)


async def insert_encounter(uow: UnitOfWork, doc: Document) -> None:
    """Raises DuplicateKeyError when the appointment already has an encounter."""
    await uow.db[ENCOUNTERS].insert_one(doc, session=uow.session)


async def update_encounter(uow: UnitOfWork, encounter: Document, fields: Document) -> bool:
    """``$set`` ``fields`` if ``encounter`` is still at its version; whether it was."""
    result = await uow.db[ENCOUNTERS].update_one(
        {"_id": encounter["_id"], "version": encounter["version"]},
        {"$set": fields, "$inc": {"version": 1}}, session=uow.session)
    return result.matched_count == 1


async def encounters_page(db: Db, patient_id: str, *, cursor: str | None, limit: int,
                          session: Any = None) -> tuple[list[Document], str | None]:
    """One page of the patient's encounters, oldest first, and the next cursor.

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """
    return await keyset_page(db[ENCOUNTERS], {"patient_id": patient_id},
                             sort=["created_at", "_id"], cursor=cursor, limit=limit,
                             hint="patient", session=session)


# ----------------------------------------------------------------------------- entries


async def insert_entry(uow: UnitOfWork, head: Document, version: Document) -> None:
    await uow.db[ENTRIES].insert_one(head, session=uow.session)
    await uow.db[VERSIONS].insert_one(version, session=uow.session)


async def supersede_entry(uow: UnitOfWork, previous_version: int, head: Document,
                          version: Document) -> bool:
    """Make ``head`` current if the entry is still at ``previous_version``; keep ``version``.

    The history record is inserted (its ``_id`` is unique), never updated.
    """
    result = await uow.db[ENTRIES].replace_one(
        {"_id": head["_id"], "version": previous_version}, head, session=uow.session)
    if result.matched_count != 1:
        return False
    await uow.db[VERSIONS].insert_one(version, session=uow.session)
    return True


async def get_entry(db: Db, entry_id: str, session: Any = None) -> Document | None:
    return await db[ENTRIES].find_one({"_id": entry_id}, session=session)


async def count_entries(uow: UnitOfWork, query: Document) -> int:
    return await uow.db[ENTRIES].count_documents(query, session=uow.session)


async def entries_page(db: Db, query: Document, *, cursor: str | None, limit: int,
                       session: Any = None) -> tuple[list[Document], str | None]:
    """One page of current entries matching ``query`` (with ``patient_id`` or
    ``encounter_id``), oldest first, and the cursor of the next (``None``: the last).

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """
    hint = "encounter" if "encounter_id" in query else "patient"
    return await keyset_page(db[ENTRIES], query, sort=["recorded_at", "_id"], cursor=cursor,
                             limit=limit, hint=hint, session=session)


async def versions_of(db: Db, entry_id: str, session: Any = None) -> list[Document]:
    """Every version of the entry, version 1 first."""
    return await db[VERSIONS].find({"entry_id": entry_id}, session=session).sort(
        "version", ASCENDING).to_list()


# ----------------------------------------------------------------------------- read models


async def insert_grant(uow: UnitOfWork, grant: Document) -> None:
    await uow.db[EMERGENCY].insert_one(grant, session=uow.session)


async def live_grant(uow: UnitOfWork, doctor_user_id: str, patient_id: str, now: Any
                     ) -> Document | None:
    """The doctor's break-the-glass grant on the patient that expires last, if after ``now``."""
    return await uow.db[EMERGENCY].find_one(
        {"doctor_user_id": doctor_user_id, "patient_id": patient_id, "expires_at": {"$gt": now}},
        sort=[("expires_at", -1)], session=uow.session)


async def add_patient(uow: UnitOfWork, patient_id: str, registered_at: Any) -> None:
    await uow.db[PATIENTS].update_one({"_id": patient_id},
                                      {"$setOnInsert": {"registered_at": registered_at}},
                                      upsert=True, session=uow.session)


async def patient_exists(uow: UnitOfWork, patient_id: str) -> bool:
    found = await uow.db[PATIENTS].find_one({"_id": patient_id}, {"_id": 1},
                                            session=uow.session)
    return found is not None


async def put_hospital(uow: UnitOfWork, hospital_id: str, version: int, status: str) -> None:
    """Keep the hospital's ``status`` at ``version`` unless a newer version is kept."""
    newer = await uow.db[HOSPITALS].find_one({"_id": hospital_id, "version": {"$gte": version}},
                                             {"_id": 1}, session=uow.session)
    if newer is None:
        await uow.db[HOSPITALS].update_one(
            {"_id": hospital_id}, {"$set": {"status": status, "version": version}},
            upsert=True, session=uow.session)


async def hospital_verified(uow: UnitOfWork, hospital_id: str) -> bool:
    found = await uow.db[HOSPITALS].find_one({"_id": hospital_id, "status": "verified"},
                                             {"_id": 1}, session=uow.session)
    return found is not None


# ----------------------------------------------------------------------------- documents


async def insert_document(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[DOCUMENTS].insert_one(doc, session=uow.session)


async def get_document(db: Db, document_id: str, session: Any = None) -> Document | None:
    return await db[DOCUMENTS].find_one({"_id": document_id}, session=session)


async def withdraw_document(uow: UnitOfWork, document_id: str, withdrawal: Document) -> bool:
    """Mark the document entered in error; False when it already was."""
    result = await uow.db[DOCUMENTS].update_one(
        {"_id": document_id, "withdrawal": None}, {"$set": {"withdrawal": withdrawal}},
        session=uow.session)
    return bool(result.modified_count)


async def documents_page(db: Db, patient_id: str, *, cursor: str | None, limit: int,
                         session: Any = None) -> tuple[list[Document], str | None]:
    """One page of the patient's documents, oldest first, and the next cursor.

    Raises:
        BadRequest (400): a cursor this API did not issue.
    """
    return await keyset_page(db[DOCUMENTS], {"patient_id": patient_id},
                             sort=["uploaded_at", "_id"], cursor=cursor, limit=limit,
                             hint="patient", session=session)


async def referenced_keys(db: Db, keys: list[str]) -> list[str]:
    """Those of ``keys`` a committed document references (for the blob sweeper)."""
    found = db[DOCUMENTS].find({"blob.key": {"$in": keys}}, {"blob.key": 1})
    return [d["blob"]["key"] async for d in found]
