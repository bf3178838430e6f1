"""Use cases of the teleconference service: rooms from appointments, joining, the waiting
room, admission, removal, ending, and WebRTC signalling through Janus.

Who may act, beyond the route's permission: :mod:`.access` (members, guests, the
doctor); media (publish, subscribe) only for an admitted participant of an open room.

Database writes and their events commit in one transaction; Janus calls happen
outside it (Janus cannot roll back) and after it where they follow a decision
(a removal is recorded, then the participant is kicked).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from healthflow.common.auth import Principal
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.common.problems import Conflict, NotFound, UnprocessableContent
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.teleconference import events, recording, store
from healthflow.teleconference.access import as_doctor, room_of, window_of
from healthflow.teleconference.domain import (
    NotAdmitted,
    ParticipantState,
    Role,
    RoomStatus,
    Window,
    check_status,
    link_quality,
    state_on_join,
    turn_credentials,
)
from healthflow.teleconference.events import ids_of, subject_of
from healthflow.teleconference.janus import Janus, JanusError, Jsep
from healthflow.teleconference.settings import Settings

READY = frozenset({"booked", "confirmed", "checked_in"})
"""Appointment statuses whose consultation may take place (a held, unpaid online
booking may not)."""


class AppointmentNotReady(Conflict):
    title, slug = "Appointment Not Ready", "appointment-not-ready"


# --------------------------------------------------------------------------- appointments

async def appointment_changed(uow: UnitOfWork, appointment: AppointmentEvent,
                              at: datetime) -> None:
    """Keeps the room of an online appointment (``at``: the event's time, aware UTC).

    Delivery is unordered: a change older than the one applied is ignored, and a
    cancelled room stays cancelled (a late ``booked`` does not reopen it). An
    appointment without the doctor's user id has no room (no doctor could join it).
    """
    if appointment.mode != "online" or not appointment.doctor_user_id:
        return
    room = await store.get_room(uow.db, appointment.appointment_id, session=uow.session)
    if room is not None and (room["status"] != RoomStatus.SCHEDULED
                             or room["appointment_at"] > at):
        return
    now = utcnow()
    changes: Document = {"start": appointment.start, "end": appointment.end,
                         "appointment_status": appointment.status, "appointment_at": at,
                         "updated_at": now}
    if appointment.status in ("cancelled", "no_show"):
        changes["status"] = RoomStatus.CANCELLED
    on_insert: Document = {
        "patient_id": appointment.patient_id, "doctor_user_id": appointment.doctor_user_id,
        "doctor_id": appointment.doctor_id, "janus_room": None, "janus_secret": None,
        "created_at": now}
    if "status" not in changes:
        on_insert["status"] = RoomStatus.SCHEDULED
    await store.upsert_room(uow, appointment.appointment_id, on_insert, changes)


# --------------------------------------------------------------------------- members

async def view(runtime: ServiceRuntime, principal: Principal, room_id: str
               ) -> tuple[Document, Role, list[Document], Window]:
    """The room, the caller's role, its participants and its window."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    room, role = await room_of(runtime, principal, room_id)
    return room, role, await store.participants(runtime.db, room_id), window_of(settings, room)


def ice_servers(settings: Settings, principal: Principal, now: datetime
                ) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries (W3C WebRTC §4.2.1) for the caller: STUN as configured,
    TURN with credentials that expire after ``turn_ttl_seconds``."""
    found: list[dict[str, Any]] = []
    for url in settings.ice_servers:
        server: dict[str, Any] = {"urls": [url]}
        if url.startswith(("turn:", "turns:")) and settings.turn_secret is not None:
            username, credential, _ = turn_credentials(
                settings.turn_secret.get_secret_value(), principal.subject, now,
                timedelta(seconds=settings.turn_ttl_seconds))
            server |= {"username": username, "credential": credential}
        found.append(server)
    return found


async def join(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
               ) -> Document:
    """The caller enters the room: the doctor (and anyone admitted before) is admitted,
    the patient waits for the doctor; ``teleconsult.participant_joined``. Coming back
    admitted without having consented stops a recording under way, as an admission
    would.

    Raises:
        NotFound: (404) not a member.
        RoomNotOpen / RoomClosed: (409) outside the window, or the consultation ended.
        AppointmentNotReady: (409) the appointment is not paid or confirmed yet.
        Removed: (403) the doctor removed the caller.
    """
    settings: Settings = runtime.settings  # type: ignore[assignment]
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, Document, bool]:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        check_status(room["status"])
        window_of(settings, room).check(now)
        if room["appointment_status"] not in READY:
            raise AppointmentNotReady(
                f"the appointment is {room['appointment_status']}; the consultation takes "
                "place once it is confirmed")
        existing = await store.participant(uow.db, room_id, principal.subject,
                                           session=uow.session)
        state = state_on_join(role, existing["state"] if existing else None,
                              bool(existing and existing["was_admitted"]))
        admitted = state is ParticipantState.ADMITTED
        if admitted:
            await store.claim_room(uow, room_id, now)
        if existing is None:
            doc: Document = {
                "_id": str(uuid.uuid4()), "room_id": room_id, "user_id": principal.subject,
                "role": role.value, "state": state.value, "was_admitted": admitted,
                "guest_kind": principal.claims.get("kind") if role is Role.GUEST else None,
                "janus": None, "subscriptions": {}, "joined_at": now,
                "admitted_at": now if admitted else None, "left_at": None,
                "history": [{"state": state.value, "at": now, "by": principal.subject}]}
            await store.insert_participant(uow, doc)
        else:
            doc = existing
            await store.move_participant(uow, doc["_id"], state.value, now, principal.subject,
                                         {"joined_at": now, "left_at": None})
        uow.publish(events.TeleconsultParticipantJoined(
            **ids_of(room), participant_id=doc["_id"], user_id=principal.subject,
            role=role.value, state=state.value, joined_at=now),
            subject=subject_of(room_id), patientid=room["patient_id"])
        stopped = admitted and await recording.stop_unconsented(uow, room, doc,
                                                                principal.subject, now)
        return room, doc, stopped

    room, doc, stopped = await runtime.transact(write, actor=principal.actor)
    if stopped:
        await recording.halt(janus, room)
    return await store.participant_by_id(runtime.db, doc["_id"]) or doc


async def admit(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                participant_id: str) -> Document:
    """The doctor admits a waiting participant. The first admission of the patient starts
    the consultation: ``teleconsult.started`` (the records service starts the
    encounter); ``teleconsult.participant_joined`` (state admitted). Admitting someone
    who has not consented to a recording under way stops it.

    Raises:
        NotFound: (404) not a member, or no such participant in this room.
        Forbidden: (403) the caller is not the doctor.
        Conflict: (409) the participant is not waiting.
    """
    settings: Settings = runtime.settings  # type: ignore[assignment]
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, Document, bool]:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        as_doctor(role)
        check_status(room["status"])
        window_of(settings, room).check(now)
        doc = await store.participant_by_id(uow.db, participant_id, session=uow.session)
        if doc is None or doc["room_id"] != room_id:
            raise NotFound(f"no participant {participant_id} in this room")
        if doc["state"] != ParticipantState.WAITING:
            raise Conflict(f"the participant is {doc['state']}, not waiting")
        await store.claim_room(uow, room_id, now)
        await store.move_participant(uow, participant_id, ParticipantState.ADMITTED, now,
                                     principal.subject,
                                     {"was_admitted": True, "admitted_at": now})
        if (doc["role"] == Role.PATIENT and room["status"] == RoomStatus.SCHEDULED
                and await store.update_room(uow, room_id, {
                    "status": RoomStatus.IN_PROGRESS, "started_at": now, "updated_at": now},
                    expect_status=RoomStatus.SCHEDULED)):
            uow.publish(events.TeleconsultStarted(**ids_of(room), started_at=now),
                        subject=subject_of(room_id), patientid=room["patient_id"])
        uow.publish(events.TeleconsultParticipantJoined(
            **ids_of(room), participant_id=participant_id, user_id=doc["user_id"],
            role=doc["role"], state=ParticipantState.ADMITTED, joined_at=now,
            admitted_by=principal.subject),
            subject=subject_of(room_id), patientid=room["patient_id"])
        stopped = await recording.stop_unconsented(uow, room, doc, principal.subject, now)
        return room, doc, stopped

    room, doc, stopped = await runtime.transact(write, actor=principal.actor)
    if stopped:
        await recording.halt(janus, room)
    return await store.participant_by_id(runtime.db, doc["_id"]) or doc


async def _hang_up(janus: Janus, participant: Document) -> None:
    """Ends a participant's Janus sessions (publisher and subscriptions)."""
    sessions = [s["session"] for s in (participant.get("subscriptions") or {}).values()]
    if participant.get("janus"):
        sessions.append(participant["janus"]["session"])
    for session in sessions:
        await janus.destroy_session(int(session))


async def _leave(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                 participant_id: str | None, reason: str) -> Document:
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, Document]:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        if participant_id is None:
            doc = await store.participant(uow.db, room_id, principal.subject,
                                          session=uow.session)
            if doc is None:
                raise NotFound("you have not joined this room")
        else:
            as_doctor(role)
            doc = await store.participant_by_id(uow.db, participant_id, session=uow.session)
            if doc is None or doc["room_id"] != room_id:
                raise NotFound(f"no participant {participant_id} in this room")
            if doc["user_id"] == principal.subject:
                raise UnprocessableContent("the doctor ends the consultation instead")
        if doc["state"] in (ParticipantState.LEFT, ParticipantState.REMOVED):
            return room, doc  # left already: nothing happens twice
        state = ParticipantState.REMOVED if reason == "removed" else ParticipantState.LEFT
        await store.move_participant(uow, doc["_id"], state, now, principal.subject,
                                     {"left_at": now})
        uow.publish(events.TeleconsultParticipantLeft(
            **ids_of(room), participant_id=doc["_id"], user_id=doc["user_id"], role=doc["role"],
            reason=reason, left_at=now,
            removed_by=principal.subject if reason == "removed" else None),
            subject=subject_of(room_id), patientid=room["patient_id"])
        return room, doc

    room, doc = await runtime.transact(write, actor=principal.actor)
    if reason == "removed" and room.get("janus_room"):
        await janus.kick(room["janus_room"], room["janus_secret"], doc["_id"])
    await _hang_up(janus, doc)
    await store.set_media(runtime.db, doc["_id"], {"janus": None, "subscriptions": {}})
    return await store.participant_by_id(runtime.db, doc["_id"]) or doc


async def leave(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
                ) -> Document:
    """The caller leaves (may join again); ``teleconsult.participant_left``."""
    return await _leave(runtime, janus, principal, room_id, None, "left")


async def remove(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                 participant_id: str) -> Document:
    """The doctor removes a participant for good (kicked from the media room);
    ``teleconsult.participant_left`` (reason removed).

    Raises:
        Forbidden: (403) the caller is not the doctor. UnprocessableContent: (422) the
            doctor names themself.
    """
    return await _leave(runtime, janus, principal, room_id, participant_id, "removed")


async def end(runtime: ServiceRuntime, janus: Janus, principal: Principal | None,
              room_id: str, *, room: Document | None = None) -> Document:
    """The consultation ends (by its doctor, or by the system when ``principal`` is
    ``None`` and ``room`` is given): every participant still in is let out, the media
    room destroyed; ``teleconsult.ended`` (the records service finishes the encounter).

    Raises:
        Forbidden: (403) the caller is not the doctor. RoomClosed: (409) ended already.
    """
    now = utcnow()
    by = principal.subject if principal else "system"

    async def write(uow: UnitOfWork) -> tuple[Document, list[Document]]:
        if principal is not None:
            current, role = await room_of(runtime, principal, room_id, session=uow.session)
            as_doctor(role)
        else:
            current = await store.get_room(uow.db, room_id, session=uow.session) or room or {}
        check_status(current["status"])
        started = current["status"] == RoomStatus.IN_PROGRESS
        await store.update_room(uow, room_id, {"status": RoomStatus.ENDED, "ended_at": now,
                                               "ended_by": by, "updated_at": now})
        inside = [p for p in await store.participants(uow.db, room_id, session=uow.session)
                  if p["state"] in (ParticipantState.WAITING, ParticipantState.ADMITTED)]
        for p in inside:
            await store.move_participant(uow, p["_id"], ParticipantState.LEFT, now, by,
                                         {"left_at": now})
            uow.publish(events.TeleconsultParticipantLeft(
                **ids_of(current), participant_id=p["_id"], user_id=p["user_id"],
                role=p["role"], reason="ended", left_at=now),
                subject=subject_of(room_id), patientid=current["patient_id"])
        await recording.stop_in(uow, current, by, "ended", now)
        uow.publish(events.TeleconsultEnded(**ids_of(current), ended_at=now, ended_by=by,
                                            started=started),
                    subject=subject_of(room_id), patientid=current["patient_id"])
        return current, inside

    current, inside = await runtime.transact(write, actor=by)
    if current.get("janus_room"):
        await janus.destroy_room(current["janus_room"], current["janus_secret"])
    for p in inside:
        await _hang_up(janus, p)
        await store.set_media(runtime.db, p["_id"], {"janus": None, "subscriptions": {}})
    return await store.get_room(runtime.db, room_id) or current


async def close_expired(runtime: ServiceRuntime, janus: Janus) -> int:
    """Ends every open room whose window has closed; how many."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    cutoff = utcnow() - timedelta(seconds=settings.close_after_seconds)
    closed = 0
    for room in await store.rooms_to_close(runtime.db, cutoff):
        try:
            await end(runtime, janus, None, room["_id"], room=room)
        except Conflict:
            continue  # another replica ended it first
        closed += 1
    return closed


async def keep_alive(runtime: ServiceRuntime, janus: Janus) -> None:
    """Janus ends a session after 60 s without a request: every participant's session
    gets a keep-alive."""
    for session in await store.media_sessions(runtime.db):
        await janus.keepalive(session)


# --------------------------------------------------------------------------- media

async def _admitted(runtime: ServiceRuntime, principal: Principal, room_id: str
                    ) -> tuple[Document, Document]:
    settings: Settings = runtime.settings  # type: ignore[assignment]
    room, _ = await room_of(runtime, principal, room_id)
    check_status(room["status"])
    window_of(settings, room).check(utcnow())
    me = await store.participant(runtime.db, room_id, principal.subject)
    if me is None or me["state"] != ParticipantState.ADMITTED:
        raise NotAdmitted("media only flows once the doctor has admitted you"
                          if me is None or me["state"] == ParticipantState.WAITING
                          else f"you are {me['state']}")
    return room, me


async def _media_room(runtime: ServiceRuntime, janus: Janus, room: Document) -> Document:
    """The room with its Janus room, created at Janus on first use (idempotent)."""
    if not room.get("janus_room"):
        await runtime.db[store.ROOMS].update_one(
            {"_id": room["_id"], "janus_room": None},
            {"$set": {"janus_room": room["_id"], "janus_secret": secrets.token_urlsafe(24)}})
        room = await store.get_room(runtime.db, room["_id"]) or room
    settings: Settings = runtime.settings  # type: ignore[assignment]
    await janus.create_room(room["janus_room"], room["janus_secret"],
                            rec_dir=str(recording.recordings_root(settings)))
    return room


async def publish(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                  offer: Jsep) -> tuple[str, Jsep]:
    """Sends the caller's camera and microphone: their SDP offer (RFC 8829 JSEP) in,
    Janus's SDP answer out, with the caller's feed id. Publishing again (a reconnection
    after a dropped network) replaces the earlier publisher.

    Raises:
        NotAdmitted: (409) not admitted. UnprocessableContent: (422) Janus refused the
            offer (e.g. no audio or video it can take).
    """
    room, me = await _admitted(runtime, principal, room_id)
    room = await _media_room(runtime, janus, room)
    if me.get("janus"):
        await janus.destroy_session(int(me["janus"]["session"]))
    session, handle = await janus.open_handle()
    await store.set_media(runtime.db, me["_id"], {"janus": {
        "session": session, "handle": handle, "since": utcnow()}})
    try:
        _, answer = await janus.message(session, handle, {
            "request": "joinandconfigure", "room": room["janus_room"], "ptype": "publisher",
            "id": me["_id"], "display": me["role"], "audio": True, "video": True}, offer)
    except JanusError as exc:
        await janus.destroy_session(session)
        raise UnprocessableContent(
            f"the media server refused the offer: {exc.reason}") from exc
    if answer is None:
        raise UnprocessableContent("the media server gave no answer to the offer")
    return me["_id"], answer


async def feeds(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
                ) -> list[Document]:
    """The other admitted participants whose media flows now: ``{feed, participant_id,
    role, since}``; ``since`` (aware UTC) changes when the feed is published anew (a
    reconnection), which ends the subscriptions to the earlier one."""
    room, me = await _admitted(runtime, principal, room_id)
    if not room.get("janus_room"):
        return []
    live = set(await janus.publishers(room["janus_room"]))
    return [{"feed": p["_id"], "participant_id": p["_id"], "role": p["role"],
             "since": (p.get("janus") or {}).get("since")}
            for p in await store.participants(runtime.db, room_id)
            if p["_id"] in live and p["_id"] != me["_id"]
            and p["state"] == ParticipantState.ADMITTED]


async def subscribe(runtime: ServiceRuntime, janus: Janus, principal: Principal,
                    room_id: str, feed: str) -> tuple[str, Jsep]:
    """Receives another participant's feed: Janus's SDP offer out, to be answered at
    :func:`answer`; returns ``(subscription id, offer)``. Subscribing again to a feed
    (a reconnection) replaces the earlier subscription and ends its Janus session, so a
    participant holds at most one per other participant.

    Raises:
        NotFound: (404) no such live feed in this room.
    """
    room, me = await _admitted(runtime, principal, room_id)
    other = await store.participant_by_id(runtime.db, feed)
    if (other is None or other["room_id"] != room_id or feed == me["_id"]
            or other["state"] != ParticipantState.ADMITTED or not room.get("janus_room")):
        raise NotFound(f"no feed {feed} in this room")
    session, handle = await janus.open_handle()
    try:
        _, offer = await janus.message(session, handle, {
            "request": "join", "room": room["janus_room"], "ptype": "subscriber",
            "streams": [{"feed": feed}]})
    except JanusError as exc:
        await janus.destroy_session(session)
        raise NotFound(f"no feed {feed} in this room ({exc.reason})") from exc
    if offer is None:
        await janus.destroy_session(session)
        raise NotFound(f"feed {feed} sends no media yet")
    subscription = uuid.uuid4().hex
    replaced = {key: sub for key, sub in (me.get("subscriptions") or {}).items()
                if sub["feed"] == feed}
    await store.set_media(runtime.db, me["_id"], {f"subscriptions.{subscription}": {
        "feed": feed, "session": session, "handle": handle}},
        unset={f"subscriptions.{key}": "" for key in replaced})
    for sub in replaced.values():
        await janus.destroy_session(int(sub["session"]))
    return subscription, offer


async def answer(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                 subscription: str, sdp_answer: Jsep) -> None:
    """The caller's SDP answer to a subscription's offer: media starts flowing.

    Raises:
        NotFound: (404) no such subscription of the caller.
        UnprocessableContent: (422) Janus refused the answer (e.g. not an SDP it parses).
    """
    _, me = await _admitted(runtime, principal, room_id)
    sub = (me.get("subscriptions") or {}).get(subscription)
    if sub is None:
        raise NotFound(f"no subscription {subscription}")
    try:
        await janus.message(int(sub["session"]), int(sub["handle"]), {"request": "start"},
                            sdp_answer)
    except JanusError as exc:
        raise UnprocessableContent(
            f"the media server refused the answer: {exc.reason}") from exc


async def quality(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
                  ) -> list[Document]:
    """The connection of every admitted participant who sends media, as Janus measures
    it (:func:`~healthflow.teleconference.domain.link_quality`): ``{participant_id, role,
    media: [...]}``. Raises ``Forbidden`` (403) for anyone but the doctor."""
    _, role = await room_of(runtime, principal, room_id)
    as_doctor(role)
    found = []
    for p in await store.participants(runtime.db, room_id):
        if p["state"] != ParticipantState.ADMITTED or not p.get("janus"):
            continue
        try:
            info = await janus.handle_stats(int(p["janus"]["session"]),
                                            int(p["janus"]["handle"]))
        except JanusError:
            continue  # their connection has just gone
        found.append({"participant_id": p["_id"], "role": p["role"],
                      "media": link_quality(info)})
    return found
