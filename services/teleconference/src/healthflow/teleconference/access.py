"""Who may act on a room, and when: its appointment's patient and doctor, and the guests
the doctor invited (each in that room only), within the room's window.

Anyone else gets 404, the same as for a room that does not exist (RFC 9110 §15.5.5
allows a 404 in place of a 403 so that existence is not revealed); among the two,
only the doctor admits, removes, ends and records.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.mongo import Document
from healthflow.common.problems import Forbidden, NotFound
from healthflow.common.service import ServiceRuntime
from healthflow.teleconference import store
from healthflow.teleconference.domain import ParticipantState, Removed, Role, Window
from healthflow.teleconference.settings import Settings


async def room_of(runtime: ServiceRuntime, principal: Principal, room_id: str,
                  session: Any = None) -> tuple[Document, Role]:
    """The room and the caller's role in it.

    Raises:
        NotFound: (404) no such room, or the caller is not its patient, its doctor or a
            guest invited to it.
        Removed: (403) the caller is a guest the doctor removed: their session reaches
            nothing of the room any more (the patient and doctor remain its members).
    """
    room = await store.get_room(runtime.db, room_id, session=session)
    if room is not None:
        if room["patient_id"] == principal.subject:
            return room, Role.PATIENT
        if room["doctor_user_id"] == principal.subject:
            return room, Role.DOCTOR
        if "guest" in principal.roles and principal.claims.get("room_id") == room_id:
            me = await store.participant(runtime.db, room_id, principal.subject,
                                         session=session)
            if me is not None and me["state"] == ParticipantState.REMOVED:
                raise Removed("the doctor removed you from this consultation")
            return room, Role.GUEST
    raise NotFound(f"no teleconsultation {room_id}")


def window_of(settings: Settings, room: Document) -> Window:
    """When ``room`` may be joined (``open_before`` its start to ``close_after`` its end)."""
    return Window.of(room["start"], room["end"],
                     timedelta(seconds=settings.open_before_seconds),
                     timedelta(seconds=settings.close_after_seconds))


def as_doctor(role: Role) -> None:
    """
    Raises:
        Forbidden: (403) the caller is the patient, not the doctor.
    """
    if role is not Role.DOCTOR:
        raise Forbidden("only the consultation's doctor may do this")
