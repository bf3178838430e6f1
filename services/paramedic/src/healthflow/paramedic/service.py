"""Use cases of the paramedic service: who may do what, one transaction each, its events."""

from __future__ import annotations

import uuid

from healthflow.common.auth import Principal
from healthflow.common.errors import NotFound
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.service import ServiceRuntime
from healthflow.paramedic import events, store
from healthflow.paramedic.schemas import NoteIn


async def create_note(runtime: ServiceRuntime, principal: Principal, body: NoteIn) -> Document:
    """A note owned by the caller; ``paramedic.note_created``."""

    async def write(uow: UnitOfWork) -> Document:
        doc: Document = {"_id": str(uuid.uuid4()), "owner_id": principal.subject,
                         "title": body.title, "created_at": utcnow()}
        await store.insert_note(uow, doc)
        uow.publish(events.NoteCreated(note_id=doc["_id"], owner_id=principal.subject),
                    subject=f"note/{doc['_id']}")
        return doc

    return await runtime.transact(write, actor=principal.actor)


async def get_note(runtime: ServiceRuntime, principal: Principal, note_id: str) -> Document:
    """The caller's own note.

    Raises:
        NotFound: (404) no such note, or another user's (existence is not revealed).
    """
    doc = await store.get_note(runtime.db, note_id)
    if doc is None or doc["owner_id"] != principal.subject:
        raise NotFound(f"no note {note_id}")
    return doc
