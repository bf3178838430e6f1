"""Contracts of the events the paramedic service publishes (identifiers only, never personal
data)."""

from __future__ import annotations

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "paramedic"


@event_type("paramedic.note_created", version=1, publisher=PUBLISHER)
class NoteCreated(EventPayload):
    """The user ``owner_id`` wrote the note ``note_id``."""

    note_id: str
    owner_id: str
