"""Collections, indexes and queries of the emergency service.

Collections (database ``healthflow_emergency``), times aware UTC::

    notes   {_id, owner_id, title, created_at}
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes

NOTES = "notes"

INDEXES: Indexes = {
    NOTES: [IndexModel([("owner_id", ASCENDING), ("created_at", ASCENDING)], name="owner")],
}


async def get_note(db: AsyncDatabase[Document], note_id: str,
                   session: Any = None) -> Document | None:
    return await db[NOTES].find_one({"_id": note_id}, session=session)


async def insert_note(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[NOTES].insert_one(doc, session=uow.session)
