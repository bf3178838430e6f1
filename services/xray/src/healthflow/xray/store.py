"""Collections, indexes and queries of the xray service (the repository).

Collections (database ``healthflow_xray``), times aware UTC::

    orders      FHIR ServiceRequest: {_id, encounter_id, patient_id, requester_id, status
                 (active | completed | revoked), intent, priority, priority_rank (0 stat
                 … 3 routine: the work list's sort key), body_part, body_site {system, code,
                 display}, view, question, accession_number (unique), authored_on, updated_at}
    studies     FHIR ImagingStudy: {_id, study_uid (unique), order_id, encounter_id,
                 patient_id, modalities: [..], last_number (the last instance number
                 handed out), created_at, updated_at}
    instances   one stored file: {_id, study_id, patient_id, series_uid, sop_instance_uid
                 (unique), sop_class_uid, modality, number, content_type, blob {key, sha256,
                 size}, image {rows, columns, photometric, transfer_syntax, window,
                 body_part, view_position}, uploaded_by, uploaded_at}
    encounters  read model of ``encounter.started``/``.finished``: {_id, patient_id,
                 practitioner_id, status (in-progress | finished), started_at, finished_at}
    reports     FHIR DiagnosticReport, one per study: {_id, study_id (unique), order_id,
                 encounter_id, patient_id, status (preliminary | final), findings, impression,
                 author_id, version, created_at, updated_at, issued_at}
    care_team   the doctor↔patient care relationships (FHIR CareTeam terms), kept and
                 judged as in the records service (healthflow.common.careteam)
    results     the processing worker's output, one per instance: {_id: instance id,
                 study_id, patient_id, order_id, label ("machine-generated suggestion, not
                 a diagnosis"), checks {exposure, view, body_part, laterality, resolution:
                 {code, ...}} (:mod:`.checks`), thumbnail (PNG bytes, ≤ 256 px), overlay
                 (the lung-field overlay PNG), deidentified (the de-identified DICOM
                 copy) and sr (the TID 1500 measurement report): {key, sha256, size} of a
                 blob or None, processed_at}
    headers     the WADO-RS metadata of each DICOM instance (:mod:`.wado_metadata`):
                 {_id: the instance document's _id (a measurement SR's ``<result
                 id>:sr``), json (its DICOM JSON object as text, PS3.18 F.2, without
                 Pixel Data's value and large binary values), stored_at}; written
                 with the instance, or on its first metadata read for those stored
                 before, never changed
    jobs        the processing queue (:mod:`healthflow.common.jobs`)
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import careteam, jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes
from healthflow.common.pagination import keyset_page

ORDERS = "orders"
STUDIES = "studies"
INSTANCES = "instances"
ENCOUNTERS = "encounters"
CARE = careteam.CARE_TEAM
LEGACY_CARE = "care"
"""The read model before ``care_team``: ``{_id: "<doctor>:<patient>", doctor_user_id,
patient_id, appointments: [ids booked], cancelled: [ids], encounters: [ids conducted]}``."""
REPORTS = "reports"
RESULTS = "results"
HEADERS = "headers"
DERIVED = ("overlay", "deidentified", "sr")
"""The blobs a result references besides the original (:mod:`.processing`)."""
MAX_LISTED = 1000
"""Most rows one listing returns; paging comes later."""

INDEXES: Indexes = {
    ORDERS: [
        IndexModel([("accession_number", ASCENDING)], name="accession", unique=True),
        IndexModel([("status", ASCENDING), ("priority_rank", ASCENDING),
                    ("authored_on", ASCENDING), ("_id", ASCENDING)], name="worklist"),
        IndexModel([("patient_id", ASCENDING), ("authored_on", ASCENDING)], name="patient"),
    ],
    STUDIES: [
        IndexModel([("study_uid", ASCENDING)], name="study_uid", unique=True),
        IndexModel([("patient_id", ASCENDING), ("created_at", DESCENDING)], name="patient"),
    ],
    INSTANCES: [
        IndexModel([("sop_instance_uid", ASCENDING)], name="sop_instance_uid", unique=True),
        IndexModel([("study_id", ASCENDING), ("number", ASCENDING)], name="study"),
        IndexModel([("blob.key", ASCENDING)], name="blob"),
    ],
    REPORTS: [IndexModel([("study_id", ASCENDING)], name="study", unique=True)],
    CARE: careteam.INDEXES,
    RESULTS: [IndexModel([("study_id", ASCENDING)], name="study"),
              IndexModel([("overlay.key", ASCENDING)], name="overlay"),
              IndexModel([("deidentified.key", ASCENDING)], name="deidentified")],
    **jobs.INDEXES,
}

Db = AsyncDatabase[Document]


# ----------------------------------------------------------------------------- orders


async def insert_order(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[ORDERS].insert_one(doc, session=uow.session)


async def get_order(uow: UnitOfWork, order_id: str) -> Document | None:
    return await uow.db[ORDERS].find_one({"_id": order_id}, session=uow.session)


async def order_by_accession(uow: UnitOfWork, accession_number: str) -> Document | None:
    return await uow.db[ORDERS].find_one({"accession_number": accession_number},
                                         session=uow.session)


async def move_order(uow: UnitOfWork, order_id: str, old: str, new: str, at: datetime
                     ) -> bool:
    """``old`` → ``new`` status; whether the order was still ``old`` (compare-and-set)."""
    result = await uow.db[ORDERS].update_one(
        {"_id": order_id, "status": old}, {"$set": {"status": new, "updated_at": at}},
        session=uow.session)
    return result.matched_count == 1


async def worklist(uow: UnitOfWork, status: str, *, cursor: str | None, limit: int
                   ) -> tuple[list[Document], str | None]:
    """One page of the orders in ``status``, stat first, then asap, urgent, routine
    (``priority_rank``), oldest first within, and the next cursor. Sorted and limited
    by the database (the ``worklist`` index), so a page never drops a stat order.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    return await keyset_page(uow.db[ORDERS], {"status": status},
                             sort=["priority_rank", "authored_on", "_id"], cursor=cursor,
                             limit=limit, hint="worklist", session=uow.session)


# ----------------------------------------------------------------------------- studies


async def get_study(uow: UnitOfWork, study_id: str) -> Document | None:
    return await uow.db[STUDIES].find_one({"_id": study_id}, session=uow.session)


async def number_in_study(uow: UnitOfWork, study_uid: str, new: Document, modality: str,
                          at: datetime) -> Document:
    """The study of ``study_uid`` after taking its next instance number (``last_number``,
    ``$inc``) and adding ``modality``; created with the fields ``new`` (``_id``,
    ``order_id``, ... but not ``study_uid``, ``modalities``, ``updated_at``) when there is
    none. One upsert, so there is no window between looking and inserting: concurrent
    uploads write-conflict on this document and the driver retries all but one."""
    study = await uow.db[STUDIES].find_one_and_update(
        {"study_uid": study_uid},
        {"$setOnInsert": new, "$inc": {"last_number": 1},
         "$addToSet": {"modalities": modality}, "$set": {"updated_at": at}},
        upsert=True, return_document=ReturnDocument.AFTER, session=uow.session)
    return cast(Document, study)  # an upsert returning the document after has one


async def study_by_uid(uow: UnitOfWork, study_uid: str) -> Document | None:
    return await uow.db[STUDIES].find_one({"study_uid": study_uid}, session=uow.session)


async def orders_by_id(uow: UnitOfWork, order_ids: list[str]) -> dict[str, Document]:
    docs = await uow.db[ORDERS].find({"_id": {"$in": order_ids}},
                                     session=uow.session).to_list()
    return {d["_id"]: d for d in docs}


async def studies_of_patient(uow: UnitOfWork, patient_id: str) -> list[Document]:
    """Newest first."""
    return await uow.db[STUDIES].find({"patient_id": patient_id}, session=uow.session).sort(
        "created_at", DESCENDING).limit(MAX_LISTED).to_list()


async def instance_by_sop_uid(uow: UnitOfWork, sop_instance_uid: str) -> Document | None:
    return await uow.db[INSTANCES].find_one({"sop_instance_uid": sop_instance_uid},
                                            session=uow.session)


async def insert_instance(uow: UnitOfWork, doc: Document) -> None:
    """Raises DuplicateKeyError for a SOP Instance UID stored before."""
    await uow.db[INSTANCES].insert_one(doc, session=uow.session)


async def instances_of(uow: UnitOfWork, study_ids: list[str]) -> list[Document]:
    return await uow.db[INSTANCES].find({"study_id": {"$in": study_ids}},
                                        session=uow.session).sort(
        "number", ASCENDING).limit(MAX_LISTED).to_list()


async def get_instance(uow: UnitOfWork, study_id: str, instance_id: str) -> Document | None:
    return await uow.db[INSTANCES].find_one({"_id": instance_id, "study_id": study_id},
                                            session=uow.session)


async def referenced_keys(db: Db, keys: list[str]) -> set[str]:
    """Those of ``keys`` a stored instance references (for the blob sweeper)."""
    docs = await db[INSTANCES].find({"blob.key": {"$in": keys}}, {"blob.key": 1}).to_list()
    return {d["blob"]["key"] for d in docs}


async def derived_keys(db: Db, keys: list[str]) -> set[str]:
    """Those of ``keys`` a result references as its overlay, de-identified copy or
    measurement report SR (for the blob sweeper)."""
    found: set[str] = set()
    for kind in DERIVED:
        derived = await db[RESULTS].find({f"{kind}.key": {"$in": keys}},
                                         {f"{kind}.key": 1}).to_list()
        found |= {d[kind]["key"] for d in derived}
    return found


# ----------------------------------------------------------------------------- reports


async def report_of_study(uow: UnitOfWork, study_id: str) -> Document | None:
    return await uow.db[REPORTS].find_one({"study_id": study_id}, session=uow.session)


async def signed_studies(uow: UnitOfWork, study_ids: list[str]) -> set[str]:
    """The ids among ``study_ids`` whose report is signed (``final``)."""
    cursor = uow.db[REPORTS].find({"study_id": {"$in": study_ids}, "status": "final"},
                                  {"study_id": 1}, session=uow.session)
    return {doc["study_id"] async for doc in cursor}


async def insert_report(uow: UnitOfWork, doc: Document) -> None:
    """Raises DuplicateKeyError when the study has a report already (a concurrent draft)."""
    await uow.db[REPORTS].insert_one(doc, session=uow.session)


async def update_report(uow: UnitOfWork, report: Document, fields: Document) -> bool:
    """``$set`` ``fields`` if ``report`` is still at its version; whether it was."""
    result = await uow.db[REPORTS].update_one(
        {"_id": report["_id"], "version": report["version"]},
        {"$set": fields, "$inc": {"version": 1}}, session=uow.session)
    return result.matched_count == 1


# ----------------------------------------------------------------------------- read models


async def get_encounter(uow: UnitOfWork, encounter_id: str) -> Document | None:
    return await uow.db[ENCOUNTERS].find_one({"_id": encounter_id}, session=uow.session)


async def encounter_started(uow: UnitOfWork, encounter_id: str, fields: Document) -> None:
    """Known as in progress, unless its finish arrived first (delivery is unordered)."""
    await uow.db[ENCOUNTERS].update_one(
        {"_id": encounter_id},
        {"$set": fields, "$setOnInsert": {"status": "in-progress"}},
        upsert=True, session=uow.session)


async def encounter_finished(uow: UnitOfWork, encounter_id: str, fields: Document) -> None:
    await uow.db[ENCOUNTERS].update_one(
        {"_id": encounter_id}, {"$set": {**fields, "status": "finished"}},
        upsert=True, session=uow.session)


# ----------------------------------------------------------------------------- results


async def get_instance_by_id(uow: UnitOfWork, instance_id: str) -> Document | None:
    return await uow.db[INSTANCES].find_one({"_id": instance_id}, session=uow.session)


async def put_result(uow: UnitOfWork, doc: Document) -> bool:
    """Store (or replace: a job run again) the results of one instance; whether they
    were stored for the first time (inserted, not replaced)."""
    result = await uow.db[RESULTS].replace_one({"_id": doc["_id"]}, doc, upsert=True,
                                               session=uow.session)
    return result.upserted_id is not None


async def results_of_study(uow: UnitOfWork, study_id: str) -> list[Document]:
    """The study's results, without thumbnails, by instance id."""
    cursor = uow.db[RESULTS].find({"study_id": study_id}, {"thumbnail": 0},
                                  session=uow.session).sort("_id", ASCENDING)
    return [doc async for doc in cursor]


async def thumbnail_of(uow: UnitOfWork, study_id: str, instance_id: str) -> bytes | None:
    doc = await uow.db[RESULTS].find_one({"_id": instance_id, "study_id": study_id},
                                         {"thumbnail": 1}, session=uow.session)
    return bytes(doc["thumbnail"]) if doc and doc.get("thumbnail") else None


async def derived_of(uow: UnitOfWork, study_id: str, instance_id: str, kind: str
                     ) -> Document | None:
    """``{key, sha256, size}`` of a processed image's ``kind`` (one of :data:`DERIVED`)
    blob, or None (not processed, or none made)."""
    doc = await uow.db[RESULTS].find_one({"_id": instance_id, "study_id": study_id},
                                         {kind: 1}, session=uow.session)
    return dict(doc[kind]) if doc and doc.get(kind) else None


async def measurement_reports_of(uow: UnitOfWork, study_ids: list[str]) -> list[Document]:
    """``{_id: instance id, study_id, sr, processed_at}`` of the studies' results that
    have a TID 1500 SR (:mod:`.measurements`), by instance id."""
    cursor = uow.db[RESULTS].find({"study_id": {"$in": study_ids}, "sr": {"$ne": None}},
                                  {"study_id": 1, "sr": 1, "processed_at": 1},
                                  session=uow.session).sort("_id", ASCENDING)
    return [doc async for doc in cursor]


# ----------------------------------------------------------------------------- headers


async def insert_header(uow: UnitOfWork, instance_id: str, text: str, at: datetime) -> None:
    """The DICOM JSON header (text) of an instance being stored, in its transaction."""
    await uow.db[HEADERS].insert_one({"_id": instance_id, "json": text, "stored_at": at},
                                     session=uow.session)


async def keep_header(db: Db, instance_id: str, text: str, at: datetime) -> None:
    """Keep the header of an instance stored before headers were (idempotent: a
    concurrent reader may have kept the same one first)."""
    await db[HEADERS].update_one({"_id": instance_id},
                                 {"$setOnInsert": {"json": text, "stored_at": at}},
                                 upsert=True)


async def headers_of(db: Db, instance_ids: list[str]) -> dict[str, str]:
    """``{instance id: DICOM JSON text}`` of those of ``instance_ids`` that have one."""
    cursor = db[HEADERS].find({"_id": {"$in": instance_ids}}, {"json": 1})
    return {doc["_id"]: doc["json"] async for doc in cursor}
