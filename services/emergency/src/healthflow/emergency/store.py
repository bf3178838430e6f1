"""Collections, indexes and queries of the emergency service.

Collections (database ``healthflow_emergency``), times aware UTC::

    emergencies {_id, status (domain.Status), priority (P1–P4), triage{answers},
                 position{latitude, longitude, accuracy_m} | None, location (GeoJSON
                 Point [lon, lat]) | None, address, what_happened, caller_phone,
                 raised_by, raised_by_role, patient_id, assignment{task_id, unit_id,
                 paramedic_id, offered_at, accepted_at} | None, escalated{reason, at} |
                 None, cancel_reason, timeline[{status, at, by_role, by}], sequence
                 (orders the paramedic service's offers and escalations; service.py),
                 ended_tasks[task ids declined or timed out], version, created_at,
                 updated_at}
    raisers     {_id: user id, raises: n}: written by every patient's raise, so two
                 concurrent raises by one patient conflict and see each other
"""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.mongo import Document, Indexes, geo_index
from healthflow.emergency.domain import FINAL

EMERGENCIES = "emergencies"
RAISERS = "raisers"  # {_id: user id, raises: n}: serialises one patient's raises

INDEXES: Indexes = {
    EMERGENCIES: [
        IndexModel([("status", ASCENDING), ("priority", ASCENDING), ("created_at", ASCENDING)],
                   name="board"),
        IndexModel([("raised_by", ASCENDING), ("created_at", ASCENDING)], name="raised_by"),
        geo_index("location"),
    ],
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
