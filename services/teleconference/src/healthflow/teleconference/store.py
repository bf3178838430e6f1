"""Collections, indexes and queries of the teleconference service.

Collections (database ``healthflow_teleconference``), times aware UTC::

    rooms         {_id: appointment id, patient_id, doctor_user_id, doctor_id, start, end,
                   appointment_status, status (domain.RoomStatus), janus_room, janus_secret,
                   appointment_at: the time of the newest appointment event applied,
                   recording: the id of the recording under way | None,
                   started_at, ended_at, ended_by, created_at, updated_at}
    participants  {_id: participant id, room_id, user_id, role, state, was_admitted,
                   janus: {session, handle} | None (the publisher's),
                   subscriptions: {<subscription id>: {feed, session, handle}},
                   consent: {given, at} | None (to recording),
                   joined_at, admitted_at, left_at, history: [{state, at, by}]}
    recordings    {_id, room_id, status: recording | processing | available | failed |
                   deleted, started_at, started_by, stopped_at, stopped_by, stop_reason,
                   files: [{participant_id, role, blob: {key, size}, sha256,
                   duration_seconds, video_frames}], available_at, delete_after,
                   deleted_at, raw_removed}
    invitations   {_id, room_id, kind (domain.GuestKind), token_hash, session_hash: SHA-256
                   of the link's token and of the guest's session secret (never the
                   secrets), created_by, created_at, expires_at, redeemed_at}
    doctors       {_id: doctor id, version, hospital_ids: affiliated hospitals in the
                   doctor's order} (read model of ``doctor.schedule_changed``)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, Indexes

ROOMS = "rooms"
PARTICIPANTS = "participants"
RECORDINGS = "recordings"
INVITATIONS = "invitations"
DOCTORS = "doctors"

INDEXES: Indexes = {
    ROOMS: [IndexModel([("status", ASCENDING), ("end", ASCENDING)], name="status_end")],
    PARTICIPANTS: [
        IndexModel([("room_id", ASCENDING), ("user_id", ASCENDING)], name="room_user",
                   unique=True),
        IndexModel([("janus.session", ASCENDING)], name="janus_session", sparse=True),
    ],
    INVITATIONS: [
        IndexModel([("token_hash", ASCENDING)], name="token", unique=True),
        IndexModel([("room_id", ASCENDING)], name="room"),
        IndexModel([("session_hash", ASCENDING)], name="session", unique=True,
                   partialFilterExpression={"session_hash": {"$type": "string"}}),
    ],
    RECORDINGS: [
        IndexModel([("room_id", ASCENDING), ("started_at", ASCENDING)], name="room"),
        IndexModel([("status", ASCENDING), ("delete_after", ASCENDING)], name="retention"),
    ],
}


async def get_room(db: AsyncDatabase[Document], room_id: str,
                   session: Any = None) -> Document | None:
    return await db[ROOMS].find_one({"_id": room_id}, session=session)


async def upsert_room(uow: UnitOfWork, room_id: str, on_insert: Document,
                      changes: Document) -> None:
    await uow.db[ROOMS].update_one({"_id": room_id},
                                   {"$setOnInsert": on_insert, "$set": changes},
                                   upsert=True, session=uow.session)


async def update_room(uow: UnitOfWork, room_id: str, changes: Document,
                      expect_status: str | None = None) -> bool:
    """``True`` when the room (in ``expect_status``, if given) was changed."""
    query: Document = {"_id": room_id}
    if expect_status is not None:
        query["status"] = expect_status
    result = await uow.db[ROOMS].update_one(query, {"$set": changes}, session=uow.session)
    return result.matched_count == 1


async def claim_room(uow: UnitOfWork, room_id: str, now: datetime) -> None:
    """Writes the room in ``uow`` so that transactions deciding on who is in and who
    consents (an admission, a return, a consent) conflict with one starting a recording
    (which writes the room too): under snapshot isolation, each would otherwise decide
    on what the other had not yet committed (write skew)."""
    await uow.db[ROOMS].update_one({"_id": room_id}, {"$set": {"updated_at": now}},
                                   session=uow.session)


async def participant(db: AsyncDatabase[Document], room_id: str, user_id: str,
                      session: Any = None) -> Document | None:
    return await db[PARTICIPANTS].find_one({"room_id": room_id, "user_id": user_id},
                                           session=session)


async def participant_by_id(db: AsyncDatabase[Document], participant_id: str,
                            session: Any = None) -> Document | None:
    return await db[PARTICIPANTS].find_one({"_id": participant_id}, session=session)


async def participants(db: AsyncDatabase[Document], room_id: str,
                       session: Any = None) -> list[Document]:
    return await db[PARTICIPANTS].find({"room_id": room_id}, session=session
                                       ).sort("joined_at", ASCENDING).to_list(None)


async def insert_participant(uow: UnitOfWork, doc: Document) -> None:
    await uow.db[PARTICIPANTS].insert_one(doc, session=uow.session)


async def move_participant(uow: UnitOfWork, participant_id: str, state: str, at: datetime,
                           by: str | None, extra: Document | None = None) -> None:
    await uow.db[PARTICIPANTS].update_one(
        {"_id": participant_id},
        {"$set": {"state": state, **(extra or {})},
         "$push": {"history": {"state": state, "at": at, "by": by}}},
        session=uow.session)


async def set_media(db: AsyncDatabase[Document], participant_id: str, changes: Document,
                    unset: Document | None = None) -> None:
    """Janus handles of a participant (outside a transaction: they describe Janus's
    state, which no rollback can undo)."""
    update: Document = {"$set": changes} if changes else {}
    if unset:
        update["$unset"] = unset
    await db[PARTICIPANTS].update_one({"_id": participant_id}, update)


async def media_sessions(db: AsyncDatabase[Document]) -> list[int]:
    """Every Janus session a participant holds (publisher and subscriptions)."""
    found: list[int] = []
    async for doc in db[PARTICIPANTS].find(
            {"state": "admitted"}, {"janus": 1, "subscriptions": 1}):
        if doc.get("janus"):
            found.append(int(doc["janus"]["session"]))
        found.extend(int(s["session"]) for s in (doc.get("subscriptions") or {}).values())
    return found


async def rooms_to_close(db: AsyncDatabase[Document], closing_before: datetime,
                         limit: int = 100) -> list[Document]:
    """Open rooms whose appointment ended before ``closing_before``."""
    return await db[ROOMS].find(
        {"status": {"$in": ["scheduled", "in_progress"]}, "end": {"$lt": closing_before}}
    ).limit(limit).to_list(None)


async def put_doctor(uow: UnitOfWork, doctor_id: str, version: int,
                     hospital_ids: list[str]) -> None:
    """The doctor's hospitals, when ``version`` is newer than the one held (delivery is
    at-least-once and unordered)."""
    held = await uow.db[DOCTORS].find_one({"_id": doctor_id}, {"version": 1},
                                          session=uow.session)
    if held is not None and int(held["version"]) >= version:
        return
    await uow.db[DOCTORS].update_one({"_id": doctor_id}, {"$set": {
        "version": version, "hospital_ids": hospital_ids}}, upsert=True, session=uow.session)


async def hospital_of_doctor(db: AsyncDatabase[Document], doctor_id: str,
                             session: Any = None) -> str | None:
    """The doctor's first affiliated hospital (the one an online consultation belongs
    to), or ``None`` when unknown."""
    doc = await db[DOCTORS].find_one({"_id": doctor_id}, session=session)
    hospitals: list[str] = doc["hospital_ids"] if doc else []
    return hospitals[0] if hospitals else None
