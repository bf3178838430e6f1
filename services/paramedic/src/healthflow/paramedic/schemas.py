"""Request and response bodies of ``/api/v1/paramedic``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from healthflow.paramedic.domain import clean_title


class NoteIn(BaseModel):
    """``POST /api/v1/paramedic/notes``."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, AfterValidator(clean_title)]


class NoteOut(BaseModel):
    """A note; ``created_at`` is aware UTC."""

    id: str
    owner_id: str
    title: str
    created_at: datetime
