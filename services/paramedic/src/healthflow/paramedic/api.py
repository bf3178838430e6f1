"""HTTP routes of the paramedic service: ``/api/v1/paramedic``.

``POST /notes`` and ``GET /notes/{id}``: any signed-in user, on their own notes only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from healthflow.common.auth import Authenticated
from healthflow.common.http import get_runtime
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.paramedic import service
from healthflow.paramedic.schemas import NoteIn, NoteOut

router = APIRouter(prefix="/api/v1/paramedic", tags=["paramedic"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]


def note_out(doc: Document) -> NoteOut:
    return NoteOut.model_validate({**doc, "id": doc["_id"]})


@router.post("/notes", status_code=201, response_model=NoteOut, summary="Write a note")
async def create_note(body: NoteIn, runtime: Runtime, principal: Authenticated,
                      response: Response) -> NoteOut:
    doc = await service.create_note(runtime, principal, body)
    response.headers["Location"] = f"{router.prefix}/notes/{doc['_id']}"
    return note_out(doc)


@router.get("/notes/{note_id}", response_model=NoteOut, summary="One of my notes")
async def get_note(runtime: Runtime, principal: Authenticated,
                   note_id: Annotated[str, Path(max_length=64)]) -> NoteOut:
    """404 for another user's note as for a missing one."""
    return note_out(await service.get_note(runtime, principal, note_id))
