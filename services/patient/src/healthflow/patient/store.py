"""Collections, indexes and queries of the patient service.

* ``patients`` — one profile per patient, ``_id`` = the patient's user id; after
  ``user.erased`` its demographics are empty and ``erased_at`` is set; ``contact_changed_at``
  is the time of the newest ``user.contact_changed`` applied to its ``telecom``.
* ``care_team`` — the doctor↔patient care relationships from appointment events
  (FHIR ``CareTeam`` terms; the rule: :mod:`healthflow.common.care`), one per
  appointment: ``{_id: appointment_id, doctor_user_id, patient_id, status: active |
  inactive, period: {start, end | None}, encounter_finished_at | None, as_of}``
  (times aware UTC; ``as_of`` the time of the newest appointment event applied).
* ``patient_hospitals`` — the hospitals each patient belongs to (issue 16), from the
  ``hospital_ids`` of appointment events and the ``hospital_id`` of ``encounter.started``:
  ``{_id: patient_id, hospital_ids: [..], profile: bool}``; only ever grows. Mirrored
  into ``patients.hospital_ids`` (indexed) for the staff search's filter; kept apart
  because the events may come before the profile.
* ``staff_memberships`` — who works where (:mod:`healthflow.common.tenancy`).
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common import tenancy
from healthflow.common.mongo import Document
from healthflow.common.pagination import keyset_page

PATIENTS = "patients"
CARE = "care_team"
PATIENT_HOSPITALS = "patient_hospitals"

INDEXES = {
    PATIENTS: [
        IndexModel([("name_key", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("telecom.email", ASCENDING)]),
        IndexModel([("telecom.phone", ASCENDING)]),
        IndexModel([("birth_date", ASCENDING)]),
        IndexModel([("hospital_ids", ASCENDING), ("name_key", ASCENDING), ("_id", ASCENDING)],
                   name="hospital_name"),
    ],
    CARE: [IndexModel([("doctor_user_id", ASCENDING), ("patient_id", ASCENDING)])],
    **tenancy.INDEXES,
}

Db = AsyncDatabase[Document]


def name_key(name: dict[str, Any] | None) -> str:
    """A lower-cased search key of a HumanName (text, else given names and family)."""
    if not name:
        return ""
    text = name.get("text") or " ".join([*(name.get("given") or []), name.get("family") or ""])
    return " ".join(text.lower().split())


async def get(db: Db, patient_id: str, session: AsyncClientSession | None = None
              ) -> Document | None:
    return await db[PATIENTS].find_one({"_id": patient_id}, session=session)


async def care_of(db: Db, doctor_user_id: str, patient_id: str,
                  session: AsyncClientSession | None = None) -> list[Document]:
    """The doctor's ``active`` care relationships with the patient (one per appointment)."""
    return await db[CARE].find(
        {"doctor_user_id": doctor_user_id, "patient_id": patient_id, "status": "active"},
        session=session).to_list()


async def get_care(db: Db, session: AsyncClientSession, appointment_id: str
                   ) -> Document | None:
    return await db[CARE].find_one({"_id": appointment_id}, session=session)


async def insert_care(db: Db, session: AsyncClientSession, doc: Document) -> None:
    await db[CARE].insert_one(doc, session=session)


async def update_care(db: Db, session: AsyncClientSession, appointment_id: str,
                      fields: Document) -> None:
    await db[CARE].update_one({"_id": appointment_id}, {"$set": fields}, session=session)


async def attach_hospitals(db: Db, session: AsyncClientSession, patient_id: str,
                           hospital_ids: list[str]) -> None:
    """Record that the patient belongs to ``hospital_ids`` too (idempotent, order-free)."""
    if not hospital_ids:
        return
    added = {"$addToSet": {"hospital_ids": {"$each": sorted(set(hospital_ids))}}}
    await db[PATIENT_HOSPITALS].update_one({"_id": patient_id}, added, upsert=True,
                                           session=session)
    await db[PATIENTS].update_one({"_id": patient_id}, added, session=session)


async def hospitals_known(db: Db, session: AsyncClientSession, patient_id: str) -> list[str]:
    """The hospitals heard of for ``patient_id`` before their profile was made.

    Writes the ``patient_hospitals`` document too (``profile: true``), so a concurrent
    :func:`attach_hospitals` conflicts with the registration's transaction and one of the
    two is retried: no hospital is lost between them."""
    doc = await db[PATIENT_HOSPITALS].find_one_and_update(
        {"_id": patient_id}, {"$set": {"profile": True}}, upsert=True,
        return_document=ReturnDocument.AFTER, session=session)
    return sorted((doc or {}).get("hospital_ids") or [])


def search_query(*, name: str | None, birth_date: str | None, email: str | None,
                 phone: str | None) -> Document:
    """A query on indexed fields: name prefix (case-insensitive), exact others."""
    query: Document = {}
    if name:
        query["name_key"] = {"$regex": "^" + re.escape(" ".join(name.lower().split()))}
    if birth_date:
        query["birth_date"] = birth_date
    if email:
        query["telecom.email"] = email
    if phone:
        query["telecom.phone"] = phone
    return query


async def search(db: Db, session: AsyncClientSession, query: Document, cursor: str | None,
                 limit: int) -> tuple[list[Document], str | None]:
    """One page of patients matching ``query`` by (name_key, _id), and the next cursor.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    return await keyset_page(db[PATIENTS], query, sort=["name_key", "_id"], cursor=cursor,
                             limit=limit, session=session)
