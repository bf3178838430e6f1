"""Recording a consultation through a real Janus: refused until everyone consents,
stopped by a withdrawal, processed with janus-pp-rec and PyAV into one playable WebM per
participant in the blob store, played back by the patient, deleted after retention."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta
from typing import Any

import av
import httpx

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.mongo import utcnow
from healthflow.devkit.testing import (
    TokenFactory,
    doctor_schedule,
    eventually,
    schedule_window,
)
from healthflow.devkit.webrtc import API, Peer
from healthflow.teleconference import recording

from .conftest import Client, appointment, deliver, frames_flow, published

RECORD_SECONDS = 4.0


async def in_call(http: Any, tokens: TokenFactory, appointment_id: str) -> tuple[Peer, Peer]:
    """Doctor and patient admitted, publishing, each watching the other."""
    doctor = Peer(http, tokens.headers("doctor-user-1", ("doctor",)), appointment_id)
    patient = Peer(http, tokens.headers("patient-1", ("patient",)), appointment_id)
    await doctor.join()
    waiting = (await patient.join())["participant"]["id"]
    admitted = await http.post(f"{API}/{appointment_id}/participants/{waiting}/admit",
                               headers=doctor.headers)
    assert admitted.status_code == 200, admitted.text
    assert (await doctor.publish()).status_code == 200
    assert (await patient.publish()).status_code == 200

    async def live() -> bool:
        return bool(await doctor.feeds()) and bool(await patient.feeds())

    await eventually(live, within=20, interval=0.2, message="feeds never went live")
    assert doctor.feed and patient.feed
    await doctor.watch(patient.feed)
    await patient.watch(doctor.feed)
    await frames_flow(doctor, patient.feed, at_least=5)
    return doctor, patient


async def test_a_consented_recording_becomes_one_playable_file_per_participant(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event = appointment()
    await deliver(app, event)
    # the doctor works at h-tele, whose recordings are kept 7 days (90 elsewhere)
    await app.state.runtime.transport.publish(CloudEvent(
        source="/healthflow/doctor", type="doctor.schedule_changed",
        data=doctor_schedule(event.doctor_id, windows=[
            schedule_window(1, "09:00", "12:00", hospital="h-tele")])))

    async def known() -> bool:
        return await app.state.runtime.db["doctors"].count_documents({}) == 1

    await eventually(known, message="doctor.schedule_changed never applied")
    room = f"{API}/{event.appointment_id}"
    doctor, patient = await in_call(http, tokens, event.appointment_id)
    try:
        # nobody has consented: refused, naming who is missing; the patient cannot start it
        refused = await http.post(f"{room}/recordings/start", headers=doctor.headers)
        assert refused.status_code == 409 and refused.json()["type"].endswith(
            "/consent-missing"), refused.text
        assert len(refused.json()["missing"]) == 2
        assert (await http.post(f"{room}/recordings/start",
                                headers=patient.headers)).status_code == 403
        for peer in (doctor, patient):
            given = await http.put(f"{room}/recordings/consent", headers=peer.headers,
                                   json={"given": True})
            assert given.status_code == 200, given.text
        started = await http.post(f"{room}/recordings/start", headers=doctor.headers)
        assert started.status_code == 201 and started.json()["status"] == "recording"
        await asyncio.sleep(RECORD_SECONDS)
        stopped = await http.post(f"{room}/recordings/stop", headers=doctor.headers)
        assert stopped.status_code == 200 and stopped.json()["stop_reason"] == "stopped"
        assert (await http.post(f"{room}/recordings/stop",
                                headers=doctor.headers)).status_code == 409

        async def available() -> bool:
            listed = (await http.get(f"{room}/recordings", headers=patient.headers)).json()
            return bool(listed) and listed[0]["status"] == "available"

        await eventually(available, within=120, interval=0.5,
                         message="the recording was never processed")
        [made] = (await http.get(f"{room}/recordings", headers=patient.headers)).json()
        kept = datetime.fromisoformat(made["delete_after"]) - datetime.fromisoformat(
            made["stopped_at"])
        assert timedelta(days=7) <= kept < timedelta(days=7, minutes=5), kept
        assert sorted(f["role"] for f in made["files"]) == ["doctor", "patient"]
        for index, file in enumerate(made["files"]):
            assert abs(file["duration_seconds"] - RECORD_SECONDS) < 1.5, file
            # ColourBars sends 15 frames a second
            assert file["video_frames"] >= 15 * (RECORD_SECONDS - 1.5), file
            got = await http.get(f"{room}/recordings/{made['id']}/files/{index}",
                                 headers=patient.headers)
            assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
            assert len(got.content) == file["size"]
            with av.open(io.BytesIO(got.content)) as played:
                kinds = sorted(s.type for s in played.streams)
                assert kinds == ["audio", "video"]
                assert recording.decodable_frames(played) == file["video_frames"]
        # a short-lived link a <video> element can play without a token
        linked = await http.get(f"{room}/recordings/{made['id']}/files/0/link",
                                headers=doctor.headers)
        assert linked.status_code == 200 and linked.headers["cache-control"] == "no-store"
        link = linked.json()
        assert link["expires_in"] == 60 and "X-Amz-Expires=60" in link["url"]
        async with httpx.AsyncClient() as outside:
            played = await outside.get(link["url"])
        assert played.status_code == 200 and len(played.content) == made["files"][0]["size"]
        stranger = await http.get(f"{room}/recordings/{made['id']}/files/0",
                                  headers=tokens.headers("stranger", ("patient",)))
        assert stranger.status_code == 404
        accessed = await published(app, "recording.accessed")
        assert {(a["accessor_role"], a["file_index"]) for a in accessed} == {
            ("patient", 0), ("patient", 1), ("doctor", 0)}
        [ready] = await published(app, "recording.available")
        assert ready["recording_id"] == made["id"] and ready["files"] == 2

        # a withdrawal stops the next recording at once
        assert (await http.post(f"{room}/recordings/start",
                                headers=doctor.headers)).status_code == 201
        withdrawn = await http.put(f"{room}/recordings/consent", headers=patient.headers,
                                   json={"given": False})
        assert withdrawn.status_code == 200
        listed = (await http.get(f"{room}/recordings", headers=doctor.headers)).json()
        assert [r["stop_reason"] for r in listed] == ["stopped", "consent_withdrawn"]
        refused = await http.post(f"{room}/recordings/start", headers=doctor.headers)
        assert refused.status_code == 409 and refused.json()["missing"] == [patient.feed]

        # past its retention period the files are deleted, and that is published
        runtime = app.state.runtime
        await runtime.db["recordings"].update_one(
            {"_id": made["id"]}, {"$set": {"delete_after": utcnow() - timedelta(seconds=1)}})
        assert await recording.expire(runtime, runtime.state["blobs"]) == 1
        assert (await http.get(f"{room}/recordings/{made['id']}/files/0",
                               headers=patient.headers)).status_code == 404
        [gone] = await published(app, "recording.deleted")
        assert gone["recording_id"] == made["id"] and gone["reason"] == "retention"
        stored = await runtime.db["recordings"].find_one({"_id": made["id"]})
        assert stored["status"] == "deleted"
        for file in stored["files"]:
            assert not await runtime.state["blobs"].exists(file["blob"]["key"])
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def test_coming_back_without_consent_stops_the_recording(
        client: Client, tokens: TokenFactory) -> None:
    """Someone admitted before comes back without a new admission; if they have not
    consented, the recording under way stops, as an admission would stop it."""
    http, app = client
    event = appointment()
    await deliver(app, event)
    room = f"{API}/{event.appointment_id}"
    doctor, patient = await in_call(http, tokens, event.appointment_id)
    try:
        await patient.close()
        assert (await patient.call("POST", "/leave")).status_code == 200
        assert (await http.put(f"{room}/recordings/consent", headers=doctor.headers,
                               json={"given": True})).status_code == 200
        started = await http.post(f"{room}/recordings/start", headers=doctor.headers)
        assert started.status_code == 201, started.text
        back = await patient.join()
        assert back["participant"]["state"] == "admitted"
        [made] = (await http.get(f"{room}/recordings", headers=doctor.headers)).json()
        assert made["stop_reason"] == "unconsented_participant", made
        stored = await app.state.runtime.db["rooms"].find_one({"_id": event.appointment_id})
        assert stored["recording"] is None
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def test_a_stop_janus_missed_is_made_good_before_the_files_are_processed(
        client: Client, tokens: TokenFactory) -> None:
    """A stop commits first and Janus hears of it after: if that call is lost (Janus
    busy, the service killed), Janus must not go on recording someone who withdrew.
    The processing job, committed with the stop, stops Janus before it reads the files."""
    http, app = client
    event = appointment()
    await deliver(app, event)
    room = f"{API}/{event.appointment_id}"
    runtime = app.state.runtime
    doctor, patient = await in_call(http, tokens, event.appointment_id)
    try:
        for peer in (doctor, patient):
            assert (await http.put(f"{room}/recordings/consent", headers=peer.headers,
                                   json={"given": True})).status_code == 200
        started = await http.post(f"{room}/recordings/start", headers=doctor.headers)
        assert started.status_code == 201
        await asyncio.sleep(2)
        # the patient withdraws; the database records it, Janus is never told
        stored = await runtime.db["rooms"].find_one({"_id": event.appointment_id})
        await runtime.transact(lambda uow: recording.stop_in(
            uow, stored, "patient-1", "consent_withdrawn", utcnow()))

        async def processed() -> bool:
            made = await runtime.db["recordings"].find_one({"_id": started.json()["id"]})
            return made["status"] in ("available", "failed")

        await eventually(processed, within=60, interval=0.5, message="never processed")
        raw = recording.raw_dir(runtime.settings, event.appointment_id, started.json()["id"])

        def sizes() -> dict[str, int]:
            return {p.name: p.stat().st_size for p in raw.glob("*.mjr")}

        before = sizes()
        await asyncio.sleep(4)  # Janus writes in 4 KiB blocks, a few seconds of media
        assert before and sizes() == before, "Janus goes on recording"
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def test_a_withdrawal_racing_the_start_never_leaves_a_recording_running(
        client: Client, tokens: TokenFactory) -> None:
    """The start checks everyone's consent and the withdrawal checks for a recording,
    each in its own transaction: at the same moment, neither may miss the other."""
    http, app = client
    event = appointment()
    await deliver(app, event)
    room = f"{API}/{event.appointment_id}"
    runtime = app.state.runtime
    doctor, patient = await in_call(http, tokens, event.appointment_id)
    try:
        assert (await http.put(f"{room}/recordings/consent", headers=doctor.headers,
                               json={"given": True})).status_code == 200
        for _ in range(12):
            assert (await http.put(f"{room}/recordings/consent", headers=patient.headers,
                                   json={"given": True})).status_code == 200
            started, withdrawn = await asyncio.gather(
                http.post(f"{room}/recordings/start", headers=doctor.headers),
                http.put(f"{room}/recordings/consent", headers=patient.headers,
                         json={"given": False}))
            assert withdrawn.status_code == 200, withdrawn.text
            assert started.status_code in (201, 409), started.text
            stored = await runtime.db["rooms"].find_one({"_id": event.appointment_id})
            assert stored.get("recording") is None, "recording without the patient's consent"
    finally:
        await asyncio.gather(doctor.close(), patient.close())


async def test_raw_media_of_a_recording_never_processed_is_deleted_after_retention(
        client: Client) -> None:
    """A recording whose processing never succeeded (its job dead) still has the raw
    ``.mjr`` media of everyone on disk: retention applies to it as to a finished one."""
    _, app = client
    event = appointment()
    await deliver(app, event)
    runtime = app.state.runtime
    settings = runtime.settings
    old = utcnow() - timedelta(days=settings.recording_retention_days + 1)
    await runtime.db["recordings"].insert_one({
        "_id": "stuck-recording", "room_id": event.appointment_id, "status": "processing",
        "started_at": old, "stopped_at": old, "files": [], "delete_after": None})
    raw = recording.raw_dir(settings, event.appointment_id, "stuck-recording")
    raw.mkdir(parents=True)
    (raw / "videoroom-x-user-y-1-video-0.mjr").write_bytes(b"MJR00002" + b"\0" * 64)
    await recording.expire(runtime, runtime.state["blobs"])
    assert not raw.exists()
    stored = await runtime.db["recordings"].find_one({"_id": "stuck-recording"})
    assert stored["status"] == "deleted" and stored["raw_removed"]
    [gone] = await published(app, "recording.deleted")
    assert gone["recording_id"] == "stuck-recording" and gone["reason"] == "retention"
