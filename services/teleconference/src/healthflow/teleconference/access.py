"""Who may act on a room: its appointment's patient and doctor, nobody else.

Anyone else gets 404, the same as for a room that does not exist (RFC 9110 §15.5.5
allows a 404 in place of a 403 so that existence is not revealed); among the two,
only the doctor admits, removes, ends and records.
"""

from __future__ import annotations

from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.mongo import Document
from healthflow.common.problems import Forbidden, NotFound
from healthflow.common.service import ServiceRuntime
from healthflow.teleconference import store
from healthflow.teleconference.domain import Role


async def room_of(runtime: ServiceRuntime, principal: Principal, room_id: str,
                  session: Any = None) -> tuple[Document, Role]:
    """The room and the caller's role in it.

    Raises:
        NotFound: (404) no such room, or the caller is not its patient or doctor.
    """
    room = await store.get_room(runtime.db, room_id, session=session)
    if room is not None:
        if room["patient_id"] == principal.subject:
            return room, Role.PATIENT
        if room["doctor_user_id"] == principal.subject:
            return room, Role.DOCTOR
    raise NotFound(f"no teleconsultation {room_id}")


def as_doctor(role: Role) -> None:
    """
    Raises:
        Forbidden: (403) the caller is the patient, not the doctor.
    """
    if role is not Role.DOCTOR:
        raise Forbidden("only the consultation's doctor may do this")
