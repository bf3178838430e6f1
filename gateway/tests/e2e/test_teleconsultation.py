"""A video consultation end to end through the gateway: an online appointment is booked
and paid, its room appears, the patient waits, the doctor admits them, and two aiortc
peers send each other audio and video through Janus (started by the runner like every
other part of the platform); the encounter follows, strangers get nothing, and every
join is in the audit log.

On the session's shared platform, whose rooms open 4 days before their appointment
(``TELECONFERENCE_OPEN_BEFORE_SECONDS`` in :data:`healthflow.devkit.testing.E2E_ENV`):
its bookings are days ahead.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import av
import httpx

from healthflow.devkit.testing import RunningPlatform, eventually
from healthflow.devkit.webrtc import API, Peer
from healthflow.teleconference.recording import decodable_frames

from .conftest import (
    User,
    assert_problem,
    audit_events,
    ok,
    register_patient,
)
from .test_payments import checkout, online_doctor, online_slots, pay

RECORD_SECONDS = 4.0


async def book_and_pay(api: httpx.AsyncClient, platform: RunningPlatform, patient: User,
                       doctor: User, start: str) -> str:
    booked = ok(await api.post("/api/v1/appointments", headers=patient.headers, json={
        "doctor_id": doctor.id, "start": start, "mode": "online"}), 201)
    payment = await checkout(api, patient, booked["id"])
    intent = await asyncio.to_thread(pay, platform, payment["client_secret"],
                                     "4242424242424242")
    assert intent.status == "succeeded"
    return str(booked["id"])


async def room_ready(api: httpx.AsyncClient, user: User, appointment_id: str) -> None:
    """The room exists and knows the appointment is paid (events travel)."""

    async def joinable() -> bool:
        response = await api.post(f"{API}/{appointment_id}/join", headers=user.headers)
        return response.status_code == 200

    await eventually(joinable, within=30, interval=0.3,
                     message=f"the room of {appointment_id} never opened")


async def encounter_status(api: httpx.AsyncClient, patient: User, appointment_id: str,
                           status: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        items = ok(await api.get("/api/v1/encounters", headers=patient.headers,
                                 params={"patient_id": patient.id}))["items"]
        found = next((e for e in items if e["appointment_id"] == appointment_id), {})
        return found.get("status") == status

    await eventually(reached, within=30, interval=0.3,
                     message=f"the encounter never became {status}: {found}")
    return found


async def test_a_video_consultation_through_the_gateway_and_janus(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        doctor = await online_doctor(api, admin)
        patient, stranger = await register_patient(api), await register_patient(api, "other")
        soon = (await online_slots(api, patient, doctor, days=2, at_least=1))[0]
        aid = await book_and_pay(api, platform, patient, doctor, soon)
        room = f"{API}/{aid}"

        # strangers: as if there were no consultation; no token: 401
        assert_problem(await api.post(f"{room}/join", headers=stranger.headers), 404)
        assert_problem(await api.get(room, headers=stranger.headers), 404)
        assert_problem(await api.post(f"{room}/join"), 401)

        await room_ready(api, patient, aid)
        doctor_peer, patient_peer = Peer(api, doctor.headers, aid), Peer(api, patient.headers, aid)
        try:
            waiting = (await patient_peer.join())["participant"]
            assert waiting["state"] == "waiting"
            assert (await doctor_peer.join())["participant"]["state"] == "admitted"
            assert_problem(await patient_peer.publish(), 409, "not-admitted")
            state = ok(await api.get(room, headers=doctor.headers))
            assert [p["state"] for p in state["participants"] if p["role"] == "patient"] == [
                "waiting"]
            token_at = time.monotonic()
            ok(await api.post(f"{room}/participants/{waiting['id']}/admit",
                              headers=doctor.headers))
            started = await encounter_status(api, patient, aid, "in-progress")
            assert started["class"] == "VR"

            ok(await doctor_peer.publish())
            ok(await patient_peer.publish())

            async def live() -> bool:
                return bool(await doctor_peer.feeds()) and bool(await patient_peer.feeds())

            await eventually(live, within=20, interval=0.2, message="no feeds went live")
            assert doctor_peer.feed and patient_peer.feed
            from_patient = await doctor_peer.watch(patient_peer.feed)
            from_doctor = await patient_peer.watch(doctor_peer.feed)

            async def media_both_ways() -> bool:
                return all(r.counts["video"] >= 30 and r.counts["audio"] >= 10
                           for r in (from_patient, from_doctor))

            await eventually(media_both_ways, within=30, interval=0.2,
                             message=f"media did not flow: {from_patient}, {from_doctor}")
            assert from_doctor.first_at is not None
            print(f"\n[teleconsultation] admitted to first remote frame: "
                  f"{from_doctor.first_at - token_at:.2f} s; frames "
                  f"{from_patient.counts} / {from_doctor.counts}")

            # recorded with both consents; played back through the gateway
            for user in (doctor, patient):
                ok(await api.put(f"{room}/recordings/consent", headers=user.headers,
                                 json={"given": True}))
            ok(await api.post(f"{room}/recordings/start", headers=doctor.headers), 201)
            began = time.monotonic()
            await asyncio.sleep(RECORD_SECONDS)
            ok(await api.post(f"{room}/recordings/stop", headers=doctor.headers))
            recorded = time.monotonic() - began

            async def available() -> bool:
                listed = ok(await api.get(f"{room}/recordings", headers=patient.headers))
                return bool(listed) and listed[0]["status"] == "available"

            await eventually(available, within=120, interval=0.5,
                             message="the recording was never made available")
            [made] = ok(await api.get(f"{room}/recordings", headers=patient.headers))
            assert sorted(f["role"] for f in made["files"]) == ["doctor", "patient"]
            for index in range(2):
                got = await api.get(f"{room}/recordings/{made['id']}/files/{index}",
                                    headers=patient.headers)
                assert got.status_code == 200, got.text
                with av.open(io.BytesIO(got.content)) as played:
                    duration = float(played.duration or 0) / av.time_base
                    frames = decodable_frames(played)  # a damaged frame is skipped
                assert abs(duration - recorded) < 1.5, (duration, recorded)
                assert frames >= 15 * (recorded - 1.5), frames  # ColourBars: 15 frames/s
            files = [(f["role"], f["duration_seconds"], f["video_frames"])
                     for f in made["files"]]
            print(f"[teleconsultation] recording of {recorded:.1f} s: {files}")

            ended = ok(await api.post(f"{room}/end", headers=doctor.headers))
            assert ended["status"] == "ended"
            assert_problem(await api.post(f"{room}/join", headers=patient.headers), 409,
                           "room-closed")
            await encounter_status(api, patient, aid, "finished")
        finally:
            await asyncio.gather(doctor_peer.close(), patient_peer.close())

        async def audited() -> bool:
            entries = await audit_events(api, admin, type="teleconsult.participant_joined")
            return sum(1 for e in entries if e.get("subject") == f"teleconsultation/{aid}") >= 3

        await eventually(audited, within=30, interval=0.5,
                         message="the joins never reached the audit log")


async def test_a_join_days_before_the_room_opens_is_refused_with_its_window(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        doctor = await online_doctor(api, admin)
        patient = await register_patient(api, f"far-{uuid.uuid4().hex[:4]}")
        far = (await online_slots(api, patient, doctor, first_day=7, at_least=1))[0]
        aid = await book_and_pay(api, platform, patient, doctor, far)

        async def refused() -> bool:
            response = await api.post(f"{API}/{aid}/join", headers=patient.headers)
            return response.status_code == 409

        await eventually(refused, within=30, interval=0.3, message="no room appeared")
        problem = assert_problem(await api.post(f"{API}/{aid}/join", headers=patient.headers),
                                 409, "room-not-open")
        opens = datetime.fromisoformat(problem["opens_at"])
        assert opens == datetime.fromisoformat(far) - timedelta(days=4)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # a camera and a microphone of test patterns, allowed without asking
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


async def test_the_patient_joins_from_a_browser_and_sees_the_doctor(
        platform: RunningPlatform, admin: User, tmp_path_factory: Any) -> None:
    """Debian's Chromium (driven by Playwright, never a browser of Playwright's own) runs
    the patient's page; the doctor is an aiortc peer. The page shows the doctor's video;
    the screenshot is kept in the test's output directory."""
    from playwright.async_api import async_playwright

    async with platform.client() as api:
        doctor = await online_doctor(api, admin)
        patient = await register_patient(api, "browser")
        soon = (await online_slots(api, patient, doctor, days=2, at_least=1))[0]
        aid = await book_and_pay(api, platform, patient, doctor, soon)

        # joinable, not merely present: the room learns of the payment by an event, and a
        # join before that is 409 appointment-not-ready (CI saw that race under load)
        await room_ready(api, doctor, aid)
        doctor_peer = Peer(api, doctor.headers, aid)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{platform.gateway_url}/app/teleconsultation/"
                                f"#appointment={aid}&token={patient.access_token}")
                await doctor_peer.join()

                async def waiting() -> bool:
                    room = ok(await api.get(f"{API}/{aid}", headers=doctor.headers))
                    return any(p["role"] == "patient" and p["state"] == "waiting"
                               for p in room["participants"])

                await eventually(waiting, within=30, interval=0.3,
                                 message="the browser never joined the waiting room")
                # the page says so once its own poll of the room has come back
                await page.wait_for_function(
                    "() => document.getElementById('status').textContent"
                    ".includes('Waiting for the doctor')", timeout=10_000)
                room = ok(await api.get(f"{API}/{aid}", headers=doctor.headers))
                [waiter] = [p for p in room["participants"] if p["role"] == "patient"]
                ok(await api.post(f"{API}/{aid}/participants/{waiter['id']}/admit",
                                  headers=doctor.headers))
                ok(await doctor_peer.publish())
                # the doctor sees the browser's camera...
                await eventually(doctor_peer.feeds, within=30, interval=0.5,
                                 message="the browser never published")
                [feed] = await doctor_peer.feeds()
                from_browser = await doctor_peer.watch(feed["feed"])

                async def browser_frames() -> bool:
                    return from_browser.counts["video"] >= 10

                await eventually(browser_frames, within=30, interval=0.3,
                                 message=f"no frames from the browser: {from_browser}")
                # ...and the page plays the doctor's video
                await page.wait_for_function(
                    "() => { const v = document.getElementById('remote');"
                    " return v.videoWidth > 0 && v.currentTime > 1; }", timeout=30_000)
                assert await page.inner_text("#status") == "In consultation"
                # the doctor's network drops and comes back: the page watches the new feed
                await page.evaluate("window.before = document.getElementById('remote')"
                                    ".srcObject")
                await doctor_peer.close()
                await doctor_peer.join()
                ok(await doctor_peer.publish())
                await page.wait_for_function(
                    "() => { const v = document.getElementById('remote');"
                    " return v.srcObject !== window.before && v.videoWidth > 0"
                    " && v.currentTime > 1; }", timeout=30_000)
                shot = tmp_path_factory.mktemp("browser") / "teleconsultation.png"
                await page.screenshot(path=str(shot))
                print(f"\n[teleconsultation] browser screenshot: {shot}")
            finally:
                await browser.close()
                await doctor_peer.close()


async def test_a_guest_opens_the_doctors_link_in_a_browser_and_sees_the_doctor(
        platform: RunningPlatform, admin: User) -> None:
    """The link the doctor hands a guest (``/app/teleconsultation/#guest=<token>``) is all
    the browser gets: the page redeems it, waits, is admitted and plays the doctor's
    video; a reload comes back with the guest session (the link is spent by then)."""
    from playwright.async_api import async_playwright

    async with platform.client() as api:
        doctor = await online_doctor(api, admin)
        patient = await register_patient(api, "guest-host")
        soon = (await online_slots(api, patient, doctor, days=2, at_least=1))[0]
        aid = await book_and_pay(api, platform, patient, doctor, soon)
        await room_ready(api, doctor, aid)
        link = ok(await api.post(f"{API}/{aid}/guests", headers=doctor.headers,
                                 json={"kind": "interpreter"}), 201)
        doctor_peer = Peer(api, doctor.headers, aid)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{platform.gateway_url}{link['link']}")
                await doctor_peer.join()

                async def guest_waiting() -> list[dict[str, Any]]:
                    room = ok(await api.get(f"{API}/{aid}", headers=doctor.headers))
                    return [p for p in room["participants"]
                            if p["role"] == "guest" and p["state"] == "waiting"]

                await eventually(guest_waiting, within=30, interval=0.3,
                                 message="the guest's browser never joined")
                [waiter] = await guest_waiting()
                ok(await api.post(f"{API}/{aid}/participants/{waiter['id']}/admit",
                                  headers=doctor.headers))
                ok(await doctor_peer.publish())
                playing = ("() => { const v = document.getElementById('remote');"
                           " return v.videoWidth > 0 && v.currentTime > 1; }")
                await page.wait_for_function(playing, timeout=30_000)
                await page.reload()
                await page.wait_for_function(playing, timeout=30_000)
                assert await page.inner_text("#status") == "In consultation"
            finally:
                await browser.close()
                await doctor_peer.close()
