"""Collections, indexes and queries of the patient service.

* ``patients`` — one profile per patient, ``_id`` = the patient's user id.
* ``treatments`` — the doctor↔patient read model from appointment events:
  ``{_id: "<doctor_user_id>:<patient_id>", doctor_user_id, patient_id,
  appointments: [appointment ids not cancelled]}``; a doctor treats a patient
  while that list is not empty.
"""

from __future__ import annotations

import re
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.mongo import Document
from healthflow.common.pagination import keyset_page

PATIENTS = "patients"
TREATMENTS = "treatments"

INDEXES = {
    PATIENTS: [
        IndexModel([("name_key", ASCENDING), ("_id", ASCENDING)]),
        IndexModel([("telecom.email", ASCENDING)]),
        IndexModel([("telecom.phone", ASCENDING)]),
        IndexModel([("birth_date", ASCENDING)]),
    ],
    TREATMENTS: [IndexModel([("doctor_user_id", ASCENDING), ("patient_id", ASCENDING)])],
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


async def treats(db: Db, doctor_user_id: str, patient_id: str,
                 session: AsyncClientSession | None = None) -> bool:
    doc = await db[TREATMENTS].find_one(
        {"_id": f"{doctor_user_id}:{patient_id}", "appointments.0": {"$exists": True}},
        {"_id": 1}, session=session)
    return doc is not None


async def add_treatment(db: Db, session: AsyncClientSession, doctor_user_id: str,
                        patient_id: str, appointment_id: str) -> None:
    await db[TREATMENTS].update_one(
        {"_id": f"{doctor_user_id}:{patient_id}"},
        {"$set": {"doctor_user_id": doctor_user_id, "patient_id": patient_id},
         "$addToSet": {"appointments": appointment_id}},
        upsert=True, session=session)


async def remove_treatment(db: Db, session: AsyncClientSession, doctor_user_id: str,
                           patient_id: str, appointment_id: str) -> None:
    await db[TREATMENTS].update_one(
        {"_id": f"{doctor_user_id}:{patient_id}"},
        {"$pull": {"appointments": appointment_id}}, session=session)


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
