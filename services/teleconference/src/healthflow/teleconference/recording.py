"""Recording a consultation: only with everyone's consent, processed into one playable
file per participant, kept for the retention period, then deleted.

* **Consent** is each participant's own, given or withdrawn in the session
  (``teleconsult.recording_consent``, the evidence). The doctor starts a recording only
  when every admitted participant has consented (409 ``consent-missing`` otherwise);
  a withdrawal, or the admission of someone who has not consented, stops it at once.
* **Raw media**: Janus's VideoRoom records every publisher into ``.mjr`` files in a
  directory of the recording's own (``<janus_recordings_dir>/<room>/<recording id>``,
  set with VideoRoom ``edit``/``new_rec_dir`` before recording is enabled).
* **Processing** (a job of :data:`QUEUE`, queued with the stop): ``janus-pp-rec`` turns
  each ``.mjr`` into WebM (VP8) or Ogg (Opus); PyAV muxes a participant's audio and
  video into one WebM without re-encoding; it is stored in the blob store (use
  ``recording``, its SHA-256 kept) and ``recording.available`` published.
* **Retention**: the period of the consultation's hospital (its doctor's first
  affiliated hospital: ``recording_retention_days_by_hospital``, else
  ``recording_retention_days``) after it became available, its files are deleted and
  ``recording.deleted`` published (the audit log keeps that it happened).

Recording statuses: recording → processing → available → deleted, or failed (nothing
was recorded).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av

from healthflow.common import jobs
from healthflow.common.auth import Principal
from healthflow.common.blobs import RECORDING, BlobStore
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.jobs import Job
from healthflow.common.mongo import Document, utcnow
from healthflow.common.problems import Conflict, NotFound
from healthflow.common.service import ServiceRuntime
from healthflow.teleconference import events, store
from healthflow.teleconference.access import as_doctor, room_of
from healthflow.teleconference.domain import ParticipantState, RoomStatus, check_status
from healthflow.teleconference.events import ids_of, subject_of
from healthflow.teleconference.janus import Janus
from healthflow.teleconference.settings import Settings

QUEUE = "recording-process"
RAW = re.compile(r"^videoroom-.+-user-(?P<feed>[0-9a-f-]{36})-(?P<n>\d+)-"
                 r"(?P<kind>audio|video)-\d+\.mjr$")
"""Janus's name for a publisher's recording of one medium (the feed id is the
participant's id)."""


class ConsentMissing(Conflict):
    title, slug = "Consent Missing", "consent-missing"


class NotRecording(Conflict):
    title, slug = "Not Recording", "not-recording"


def recordings_root(settings: Settings) -> Path:
    """Janus's recordings directory, absolute (Janus runs in a directory of its own)."""
    return Path(settings.janus_recordings_dir).resolve()


def raw_dir(settings: Settings, room_id: str, recording_id: str) -> Path:
    return recordings_root(settings) / room_id / recording_id


# --------------------------------------------------------------------------- consent

async def consent(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str,
                  given: bool) -> Document:
    """The caller gives or withdraws consent; a withdrawal stops a running recording.

    Raises:
        NotFound: (404) not a member, or not joined yet.
    """
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, Document, bool]:
        room, _ = await room_of(runtime, principal, room_id, session=uow.session)
        me = await store.participant(uow.db, room_id, principal.subject, session=uow.session)
        if me is None:
            raise NotFound("join the consultation first")
        await store.claim_room(uow, room_id, now)
        await uow.db[store.PARTICIPANTS].update_one(
            {"_id": me["_id"]}, {"$set": {"consent": {"given": given, "at": now}}},
            session=uow.session)
        uow.publish(events.TeleconsultRecordingConsent(
            **ids_of(room), participant_id=me["_id"], user_id=me["user_id"], role=me["role"],
            given=given, at=now), subject=subject_of(room_id), patientid=room["patient_id"])
        stopped = not given and await stop_in(uow, room, principal.subject,
                                              "consent_withdrawn", now) is not None
        return room, me, stopped

    room, me, stopped = await runtime.transact(write, actor=principal.actor)
    if stopped:
        await halt(janus, room)
    return await store.participant_by_id(runtime.db, me["_id"]) or me


def consented(participant: Document) -> bool:
    return bool((participant.get("consent") or {}).get("given"))


# --------------------------------------------------------------------------- start, stop

async def start(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
                ) -> Document:
    """The doctor starts recording; ``teleconsult.recording_started``.

    Raises:
        Forbidden: (403) not the doctor. Conflict: (409) the consultation has not started
            or records already. ConsentMissing: (409) an admitted participant has not
            consented (``missing`` names them).
    """
    settings: Settings = runtime.settings  # type: ignore[assignment]
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, Document]:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        as_doctor(role)
        check_status(room["status"])
        if room["status"] != RoomStatus.IN_PROGRESS or not room.get("janus_room"):
            raise Conflict("recording starts once the patient is admitted and media flows")
        if room.get("recording"):
            raise Conflict("the consultation is being recorded already")
        inside = [p for p in await store.participants(uow.db, room_id, session=uow.session)
                  if p["state"] == ParticipantState.ADMITTED]
        missing = [p for p in inside if not consented(p)]
        if missing:
            raise ConsentMissing(
                "every participant must consent before recording: waiting for the "
                + ", ".join(sorted(p["role"] for p in missing)),
                missing=[p["_id"] for p in missing])
        doc: Document = {"_id": str(uuid.uuid4()), "room_id": room_id, "status": "recording",
                         "started_at": now, "started_by": principal.subject,
                         "stopped_at": None, "stop_reason": None, "files": [],
                         "delete_after": None, "created_at": now}
        await uow.db[store.RECORDINGS].insert_one(doc, session=uow.session)
        await store.update_room(uow, room_id, {"recording": doc["_id"], "updated_at": now})
        uow.publish(events.TeleconsultRecordingStarted(
            **ids_of(room), recording_id=doc["_id"], started_by=principal.subject,
            started_at=now), subject=subject_of(room_id), patientid=room["patient_id"])
        return room, doc

    room, doc = await runtime.transact(write, actor=principal.actor)
    where = raw_dir(settings, room_id, doc["_id"])
    await asyncio.to_thread(where.mkdir, parents=True, exist_ok=True)
    await janus.set_rec_dir(room["janus_room"], room["janus_secret"], str(where))
    await janus.record(room["janus_room"], room["janus_secret"], True)
    return doc


async def stop_in(uow: UnitOfWork, room: Document, by: str, reason: str, now: datetime
                  ) -> str | None:
    """Stops the room's recording in ``uow`` (the caller then stops Janus), queues its
    processing; ``teleconsult.recording_stopped``. The recording's id, or ``None``
    when the room was not recording."""
    recording_id = room.get("recording")
    if not recording_id:
        return None
    await uow.db[store.RECORDINGS].update_one(
        {"_id": recording_id, "status": "recording"},
        {"$set": {"status": "processing", "stopped_at": now, "stopped_by": by,
                  "stop_reason": reason}}, session=uow.session)
    await store.update_room(uow, room["_id"], {"recording": None, "updated_at": now})
    uow.publish(events.TeleconsultRecordingStopped(
        **ids_of(room), recording_id=recording_id, stopped_by=by, reason=reason,
        stopped_at=now), subject=subject_of(room["_id"]), patientid=room["patient_id"])
    await jobs.enqueue(uow.db, QUEUE, {"recording_id": recording_id},
                       run_at=now + timedelta(seconds=2), key=f"process-{recording_id}",
                       session=uow.session, now=now)
    return str(recording_id)


async def stop_unconsented(uow: UnitOfWork, room: Document, participant: Document, by: str,
                           now: datetime) -> bool:
    r"""Someone let in (admitted, or back after being admitted) who has not consented stops
    a recording under way, in ``uow``; whether it did (the caller then :func:`halt`\ s)."""
    return not consented(participant) and await stop_in(
        uow, room, by, "unconsented_participant", now) is not None


async def halt(janus: Janus, room: Document) -> None:
    """Tells Janus to stop recording ``room`` (after the stop is recorded)."""
    await janus.record(room["janus_room"], room["janus_secret"], False)


async def stop(runtime: ServiceRuntime, janus: Janus, principal: Principal, room_id: str
               ) -> Document:
    """The doctor stops recording.

    Raises:
        Forbidden: (403) not the doctor. NotRecording: (409) nothing is being recorded.
    """
    now = utcnow()

    async def write(uow: UnitOfWork) -> tuple[Document, str]:
        room, role = await room_of(runtime, principal, room_id, session=uow.session)
        as_doctor(role)
        recording_id = await stop_in(uow, room, principal.subject, "stopped", now)
        if recording_id is None:
            raise NotRecording("the consultation is not being recorded")
        return room, recording_id

    room, recording_id = await runtime.transact(write, actor=principal.actor)
    await halt(janus, room)
    return await runtime.db[store.RECORDINGS].find_one({"_id": recording_id}) or {}


# --------------------------------------------------------------------------- processing

@dataclass(frozen=True)
class Media:
    """One participant's recording as played back: ``duration`` seconds, ``frames``
    video frames decoded."""

    path: Path
    duration: float
    frames: int


async def _pp_rec(program: str, source: Path, target: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        program, str(source), str(target), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode != 0 or not await asyncio.to_thread(target.exists):
        raise RuntimeError(f"janus-pp-rec failed on {source.name}: "
                           f"{err.decode(errors='replace')[-300:]}")


def mux(video: Path | None, audio: Path | None, target: Path) -> Media:
    """Copies the VP8 video and the Opus audio (no re-encoding) into one WebM; decodes
    it back to measure it."""
    with av.open(str(target), "w", format="webm") as out:
        inputs = [av.open(str(p)) for p in (video, audio) if p is not None]
        try:
            pairs = [(i, i.streams[0], out.add_stream_from_template(i.streams[0]))
                     for i in inputs]
            for container, stream, made in pairs:
                for packet in container.demux(stream):
                    if packet.dts is None:
                        continue
                    packet.stream = made
                    out.mux(packet)
        finally:
            for container in inputs:
                container.close()
    with av.open(str(target)) as played:
        duration = (played.duration or 0) / av.time_base
        frames = decodable_frames(played) if played.streams.video else 0
    return Media(target, duration, frames)


def decodable_frames(played: Any) -> int:
    """The video frames a player can show: a frame that arrived damaged (a packet lost on
    the way to Janus, which records what it received) is skipped, as players skip it."""
    frames = 0
    for packet in played.demux(video=0):
        try:
            frames += len(packet.decode())
        except av.error.InvalidDataError:
            continue
    return frames


async def process(uow: UnitOfWork, blobs: BlobStore, janus: Janus, settings: Settings,
                  job: Job) -> None:
    """The recording's raw files become one stored WebM per participant;
    ``recording.available`` (or status failed when nothing was recorded).

    Janus is told again to stop recording first, unless a newer recording (consented
    anew) is under way: the stop that queued this job committed before Janus heard of
    it, and that call may have been lost. Janus unreachable fails the job, which is
    retried, so a withdrawal reaches Janus eventually and no file is read half-written.
    """
    rec = await uow.db[store.RECORDINGS].find_one({"_id": job.payload["recording_id"]},
                                                  session=uow.session)
    if rec is None or rec["status"] != "processing":
        return
    room = await store.get_room(uow.db, rec["room_id"], session=uow.session) or {}
    if room.get("janus_room") and not room.get("recording"):
        await halt(janus, room)
    raw = raw_dir(settings, rec["room_id"], rec["_id"])
    by_feed: dict[str, dict[str, Path]] = {}
    for path in await asyncio.to_thread(lambda: sorted(raw.glob("*.mjr"))):
        if match := RAW.match(path.name):  # the newest of each medium (a republish)
            by_feed.setdefault(match["feed"], {})[match["kind"]] = path
    files: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recording-") as tmp:
        for feed, media in sorted(by_feed.items()):
            converted: dict[str, Path] = {}
            for kind, source in media.items():
                target = Path(tmp) / f"{feed}-{kind}.{'webm' if kind == 'video' else 'opus'}"
                await _pp_rec(settings.janus_pp_rec, source, target)
                converted[kind] = target
            made = await asyncio.to_thread(mux, converted.get("video"), converted.get("audio"),
                                           Path(tmp) / f"{feed}.webm")
            with made.path.open("rb") as data:
                blob = await blobs.put(RECORDING, data, declared_type="video/webm")
            who = await store.participant_by_id(uow.db, feed, session=uow.session) or {}
            files.append({"participant_id": feed, "role": who.get("role"),
                          "blob": {"key": blob.key, "size": blob.size},
                          "sha256": blob.sha256, "duration_seconds": round(made.duration, 3),
                          "video_frames": made.frames})
    now = utcnow()
    if not files:
        await uow.db[store.RECORDINGS].update_one(
            {"_id": rec["_id"]}, {"$set": {"status": "failed", "failed_reason":
                                           "no media was recorded"}}, session=uow.session)
        return
    hospital = await store.hospital_of_doctor(uow.db, room.get("doctor_id", ""),
                                              session=uow.session)
    delete_after = now + timedelta(days=settings.retention_for(hospital))
    await uow.db[store.RECORDINGS].update_one(
        {"_id": rec["_id"]}, {"$set": {"status": "available", "files": files,
                                       "available_at": now, "delete_after": delete_after}},
        session=uow.session)
    uow.publish(events.RecordingAvailable(**ids_of(room), recording_id=rec["_id"],
                                          files=len(files), delete_after=delete_after),
                subject=subject_of(rec["room_id"]), patientid=room.get("patient_id"))


# --------------------------------------------------------------------------- reading, retention

async def recordings(runtime: ServiceRuntime, principal: Principal, room_id: str
                     ) -> list[Document]:
    """The room's recordings, oldest first (its patient and doctor)."""
    await room_of(runtime, principal, room_id)
    return await runtime.db[store.RECORDINGS].find({"room_id": room_id}).sort(
        "started_at", 1).to_list(None)


async def file_of(runtime: ServiceRuntime, principal: Principal, room_id: str,
                  recording_id: str, index: int) -> tuple[Document, dict[str, Any]]:
    """One stored file of an available recording; ``recording.accessed`` (committed
    before the first byte goes out).

    Raises:
        NotFound: (404) not a member, no such recording or file, or deleted.
    """
    room, role = await room_of(runtime, principal, room_id)
    rec = await runtime.db[store.RECORDINGS].find_one({"_id": recording_id,
                                                       "room_id": room_id})
    if rec is None or rec["status"] != "available" or not 0 <= index < len(rec["files"]):
        raise NotFound(f"no file {index} of recording {recording_id}")

    async def write(uow: UnitOfWork) -> None:
        uow.publish(events.RecordingAccessed(
            **ids_of(room), recording_id=recording_id, file_index=index,
            accessor_id=principal.subject, accessor_role=role.value, at=utcnow()),
            subject=subject_of(room_id), patientid=room["patient_id"])

    await runtime.transact(write, actor=principal.actor)
    return room, rec["files"][index]


async def expire(runtime: ServiceRuntime, blobs: BlobStore) -> int:
    """Deletes the files of recordings past their retention period
    (``recording.deleted``) and the raw files of processed ones; how many recordings.
    A recording whose processing never succeeded (still ``processing`` a retention
    period after it stopped) is deleted too: its raw files are everyone's media."""
    settings: Settings = runtime.settings  # type: ignore[assignment]
    now = utcnow()
    deleted = 0
    stuck_before = now - timedelta(days=settings.recording_retention_days)
    async for rec in runtime.db[store.RECORDINGS].find(
            {"$or": [{"status": "available", "delete_after": {"$lte": now}},
                     {"status": "processing", "stopped_at": {"$lte": stuck_before}}]}
            ).limit(100):
        for file in rec["files"]:
            await blobs.delete(file["blob"]["key"])

        async def write(uow: UnitOfWork, rec: Document = rec) -> None:
            room = await store.get_room(uow.db, rec["room_id"], session=uow.session) or {}
            await uow.db[store.RECORDINGS].update_one(
                {"_id": rec["_id"], "status": rec["status"]},
                {"$set": {"status": "deleted", "deleted_at": now}}, session=uow.session)
            uow.publish(events.RecordingDeleted(**ids_of(room), recording_id=rec["_id"],
                                                reason="retention", deleted_at=now),
                        subject=subject_of(rec["room_id"]), patientid=room.get("patient_id"))

        await runtime.transact(write, actor="system")
        deleted += 1
    async for rec in runtime.db[store.RECORDINGS].find(
            {"status": {"$in": ["available", "failed", "deleted"]}, "raw_removed": None}
            ).limit(100):
        shutil.rmtree(raw_dir(settings, rec["room_id"], rec["_id"]), ignore_errors=True)
        await runtime.db[store.RECORDINGS].update_one({"_id": rec["_id"]},
                                                      {"$set": {"raw_removed": now}})
    return deleted
