"""Encounters: from appointment events (planned → in-progress → finished), walk-ins, access."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts import appointment as appt
from healthflow.contracts import teleconference as tele
from healthflow.contracts.hospital import (
    HospitalRegistered,
    HospitalRejected,
    HospitalVerified,
)
from healthflow.devkit.testing import eventually

from .conftest import START, Records, appointment_event, hospital_event


async def encounters(records: Records, patient_id: str) -> list[dict]:
    response = await records.client.get("/api/v1/encounters", params={"patient_id": patient_id},
                                        headers=records.as_(patient_id, "patient"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def status_becomes(records: Records, patient_id: str, status: str) -> dict:
    found: list[dict] = []

    async def reached() -> bool:
        found[:] = await encounters(records, patient_id)
        return bool(found) and found[0]["status"] == status

    await eventually(reached, message=f"the encounter never became {status}: {found}")
    return found[0]


async def test_an_appointment_plans_starts_at_check_in_and_finishes_at_completion(
        records: Records) -> None:
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-1"
    await records.send(appointment_event(appt.AppointmentBooked, aid, pid, doctor))
    planned = await status_becomes(records, pid, "planned")
    assert planned["period"] == {"start": None, "end": None}
    assert planned["planned"]["start"] == START.strftime("%Y-%m-%dT%H:00:00Z")
    assert planned["class"] == "AMB" and planned["appointment_id"] == aid
    assert planned["hospital_id"] == "h1"  # the appointment's location

    checked_in = appointment_event(appt.AppointmentCheckedIn, aid, pid, doctor)
    await records.send(checked_in)
    await records.send(checked_in)  # a redelivery
    await records.send(appointment_event(appt.AppointmentCheckedIn, aid, pid, doctor))
    started = await status_becomes(records, pid, "in-progress")
    assert started["period"]["start"] is not None
    await records.send(appointment_event(appt.AppointmentCompleted, aid, pid, doctor))
    finished = await status_becomes(records, pid, "finished")
    assert finished["period"]["end"] >= finished["period"]["start"]
    assert len(await encounters(records, pid)) == 1

    [started_event] = await records.outbox("encounter.started")
    [finished_event] = await records.outbox("encounter.finished")
    assert started_event["patientid"] == pid and started_event["subject"] == (
        f"encounter/{finished['id']}")
    assert started_event["data"] == {
        "encounter_id": finished["id"], "patient_id": pid, "practitioner_id": doctor,
        "appointment_id": aid, "encounter_class": "AMB", "hospital_id": "h1",
        "started_at": started_event["data"]["started_at"]}
    assert finished_event["data"]["finished_at"].startswith(finished["period"]["end"][:19])


async def test_a_cancellation_before_its_booking_plans_nothing_and_ends_the_care(
        records: Records) -> None:
    pid, doctor = await records.register(), "doc-c"
    await records.send(appointment_event(appt.AppointmentCancelled, "a-2", pid, doctor))
    await status_becomes(records, pid, "cancelled")
    await records.send(appointment_event(appt.AppointmentBooked, "a-2", pid, doctor,
                                         status="booked"))
    await records.send(appointment_event(appt.AppointmentBooked, "a-3", pid, doctor))

    async def planned_again() -> bool:
        return len(await encounters(records, pid)) == 2

    await eventually(planned_again)
    statuses = sorted(e["status"] for e in await encounters(records, pid))
    assert statuses == ["cancelled", "planned"]
    listing = await records.client.get("/api/v1/encounters", params={"patient_id": pid},
                                       headers=records.as_(doctor, "doctor"))
    assert listing.status_code == 200  # a-3 still relates them
    await records.send(appointment_event(appt.AppointmentCancelled, "a-3", pid, doctor))

    async def care_ended() -> bool:
        response = await records.client.get("/api/v1/encounters", params={"patient_id": pid},
                                            headers=records.as_(doctor, "doctor"))
        return response.status_code == 403

    await eventually(care_ended, message="the cancelled appointments still relate them")


async def test_a_doctor_opens_encounters_only_for_their_own_patients(records: Records) -> None:
    """Opening an encounter is not a way into a stranger's record: the front desk opens
    a walk-in and names the doctor; after that the doctor treats the patient."""
    pid = await records.register()
    doctor = records.as_("doc-w", "doctor")
    stranger = await records.client.post("/api/v1/encounters", headers=doctor, json={
        "patient_id": pid, "class": "EMER", "reason": "fell off a ladder"})
    assert stranger.status_code == 403 and stranger.json()["type"].endswith("/not-treating")
    assert await records.runtime.db["encounters"].count_documents({}) == 0
    assert (await records.client.get(f"/api/v1/fhir/Patient/{pid}/$everything",
                                     headers=doctor)).status_code == 403
    body = await records.walk_in(pid, "doc-w", **{"class": "EMER", "reason": "fell"})
    assert (body["status"], body["class"], body["practitioner_id"], body["appointment_id"]) == (
        "in-progress", "EMER", "doc-w", None)
    finished = await records.client.post(f"/api/v1/encounters/{body['id']}/finish",
                                         headers=doctor)
    assert finished.status_code == 200 and finished.json()["status"] == "finished"
    again = await records.client.post(f"/api/v1/encounters/{body['id']}/finish", headers=doctor)
    assert again.status_code == 409 and again.json()["type"].endswith("/encounter-state")
    follow_up = await records.client.post("/api/v1/encounters", headers=doctor, json={
        "patient_id": pid, "class": "AMB"})
    assert follow_up.status_code == 201, follow_up.text
    assert follow_up.headers["location"] == f"/api/v1/encounters/{follow_up.json()['id']}"
    started = await records.outbox("encounter.started")
    assert [(e["actor"], e["data"]["encounter_class"]) for e in started] == [
        ("nurse-desk", "EMER"), ("doc-w", "AMB")]


async def test_who_may_open_a_walk_in(records: Records) -> None:
    pid = await records.register()
    post = records.client.post
    unknown = await post("/api/v1/encounters", headers=records.as_("doc-1", "doctor"),
                         json={"patient_id": "nobody"})
    assert unknown.status_code == 422 and unknown.json()["type"].endswith("/unknown-patient")
    assert unknown.headers["content-type"].startswith("application/problem+json")
    nurse = records.as_("nurse-1", "nurse")
    unnamed = await post("/api/v1/encounters", headers=nurse, json={"patient_id": pid})
    assert unnamed.status_code == 422, unnamed.text
    named = await post("/api/v1/encounters", headers=nurse,
                       json={"patient_id": pid, "practitioner_id": "doc-2"})
    assert named.status_code == 201 and named.json()["opened_by"] == "nurse-1"
    other = await post("/api/v1/encounters", headers=records.as_("doc-1", "doctor"),
                       json={"patient_id": pid, "practitioner_id": "doc-2"})
    assert other.status_code == 403
    patient = await post("/api/v1/encounters", headers=records.as_(pid, "patient"),
                         json={"patient_id": pid})
    assert patient.status_code == 403
    assert (await post("/api/v1/encounters", json={"patient_id": pid})).status_code == 401
    assert await records.runtime.db["encounters"].count_documents({}) == 1


async def test_reads_by_others_than_the_patient_are_recorded_and_limited(
        records: Records) -> None:
    pid, stranger = await records.register(), await records.register()
    opened = await records.walk_in(pid, "doc-r", **{"class": "VR"})
    url = f"/api/v1/encounters/{opened['id']}"
    assert (await records.client.get(url, headers=records.as_(pid, "patient"))
            ).status_code == 200
    assert await records.outbox("record.accessed") == []  # the patient's own read
    assert (await records.client.get(url, headers=records.as_("doc-r", "doctor"))
            ).status_code == 200
    assert (await records.client.get(url, headers=records.as_("nurse-r", "nurse"))
            ).status_code == 200
    other_doctor = await records.client.get(url, headers=records.as_("doc-x", "doctor"))
    assert other_doctor.status_code == 403
    assert other_doctor.json()["type"].endswith("/not-treating")
    assert (await records.client.get(url, headers=records.as_(stranger, "patient"))
            ).status_code == 404
    assert (await records.client.get(url, headers=records.as_("recep", "receptionist"))
            ).status_code == 403
    accessed = [(e["data"]["accessor_id"], e["data"]["accessor_role"], e["data"]["scope"])
                for e in await records.outbox("record.accessed")]
    assert sorted(accessed) == [("doc-r", "treating_doctor", "encounter"),
                                ("nurse-r", "staff", "encounter")]


async def test_a_treating_doctor_who_is_also_a_patient_reads_by_id(records: Records) -> None:
    """Roles add up: holding ``records:read_own`` too must not hide other patients'
    encounters from a doctor who treats them (the 404 is for plain patients only)."""
    pid = await records.register()
    both = records.tokens.headers("doc-p", roles=["doctor", "patient"])
    encounter_id = (await records.walk_in(pid, "doc-p"))["id"]
    read = await records.client.get(f"/api/v1/encounters/{encounter_id}", headers=both)
    assert read.status_code == 200, read.text
    listed = await records.client.get(f"/api/v1/records/encounters/{encounter_id}/entries",
                                      headers=both)
    assert listed.status_code == 200, listed.text
    accessed = [(e["data"]["accessor_id"], e["data"]["accessor_role"])
                for e in await records.outbox("record.accessed")]
    assert accessed == [("doc-p", "treating_doctor")] * 2


async def test_no_one_documents_their_own_record(records: Records) -> None:
    """A doctor who is also a registered patient neither opens an encounter on
    themselves (which would make them their own treating doctor) nor writes into
    their own record through an appointment with themselves."""
    me = await records.register()
    both = records.tokens.headers(me, roles=["doctor", "patient"])
    opened = await records.client.post("/api/v1/encounters", headers=both,
                                       json={"patient_id": me})
    assert opened.status_code == 403, opened.text
    nurse = records.as_("nurse-s", "nurse")
    named = await records.client.post("/api/v1/encounters", headers=nurse,
                                      json={"patient_id": me, "practitioner_id": me})
    assert named.status_code == 403, named.text
    assert await records.runtime.db["encounters"].count_documents({}) == 0
    assert await records.runtime.db["care_team"].count_documents({}) == 0

    await records.send(appointment_event(appt.AppointmentCheckedIn, "a-self", me, me))
    started = await status_becomes(records, me, "in-progress")
    written = await records.client.post(
        f"/api/v1/records/encounters/{started['id']}/entries", headers=both,
        json={"entry": {"type": "Condition", "text": "fit for duty"}})
    assert written.status_code == 403, written.text
    assert await records.runtime.db["entries"].count_documents({}) == 0


async def test_a_walk_in_names_only_a_verified_hospital(records: Records) -> None:
    pid, now = await records.register(), datetime.now(UTC)
    await records.send(hospital_event(HospitalRegistered, "h-pend", 1, status="pending",
                                      registered_by="admin-1"))
    await records.send(hospital_event(HospitalVerified, "h-ok", 1, status="verified",
                                      verified_at=now))
    await records.send(hospital_event(HospitalVerified, "h-gone", 1, status="verified",
                                      verified_at=now))
    await records.send(hospital_event(HospitalRejected, "h-gone", 2, status="rejected",
                                      reason="licence withdrawn", rejected_at=now))

    async def applied() -> bool:
        return await records.runtime.db["hospitals"].count_documents(
            {"_id": "h-gone", "version": 2}) == 1

    await eventually(applied, message="hospital events never applied")
    await records.staff("nurse-h", "nurse", "h-ok")
    nurse = records.as_("nurse-h", "nurse")
    for hospital_id in ("h-pend", "h-gone", "h-never"):
        refused = await records.client.post("/api/v1/encounters", headers=nurse, json={
            "patient_id": pid, "practitioner_id": "doc-h", "hospital_id": hospital_id})
        assert refused.status_code == 422, (hospital_id, refused.text)
        assert refused.json()["type"].endswith("/unknown-hospital")
    assert await records.runtime.db["encounters"].count_documents({}) == 0
    opened = await records.client.post("/api/v1/encounters", headers=nurse, json={
        "patient_id": pid, "practitioner_id": "doc-h", "hospital_id": "h-ok"})
    assert opened.status_code == 201 and opened.json()["hospital_id"] == "h-ok", opened.text


def teleconsult_event(model: type[Any], appointment_id: str, patient_id: str, doctor: str,
                      **fields: Any) -> CloudEvent:
    """A teleconsultation event as the teleconference service publishes it."""
    data = {"appointment_id": appointment_id, "patient_id": patient_id,
            "doctor_user_id": doctor, **fields}
    return CloudEvent(source="/healthflow/teleconference", type=model.event_type,
                      subject=f"teleconsultation/{appointment_id}",
                      data=model(**data).model_dump(mode="json"), time=datetime.now(UTC))


async def test_a_video_consultation_starts_at_admission_and_finishes_when_it_ends(
        records: Records) -> None:
    """Out of order too: the end and the start arrive before the booking, and are applied
    once it has (the consumer retries them)."""
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-tele"
    began = datetime.now(UTC).replace(microsecond=0)
    ended = teleconsult_event(tele.TeleconsultEnded, aid, pid, doctor,
                              ended_at=began + timedelta(minutes=20), ended_by=doctor,
                              started=True)
    await records.send(ended)
    await records.send(teleconsult_event(tele.TeleconsultStarted, aid, pid, doctor,
                                         started_at=began))
    await records.send(appointment_event(appt.AppointmentBooked, aid, pid, doctor,
                                         mode="online", location_id=None))
    finished = await status_becomes(records, pid, "finished")
    assert finished["class"] == "VR"
    assert finished["period"] == {"start": began.isoformat().replace("+00:00", "Z"),
                                  "end": (began + timedelta(minutes=20)).isoformat()
                                  .replace("+00:00", "Z")}
    await records.send(ended)  # a redelivery changes nothing
    assert [e["data"]["appointment_id"] for e in await records.outbox("encounter.finished")
            ] == [aid]
    # an ended consultation that never started leaves the planned encounter alone
    other = "a-tele-2"
    await records.send(appointment_event(appt.AppointmentBooked, other, pid, doctor,
                                         mode="online", location_id=None))
    await records.send(teleconsult_event(tele.TeleconsultEnded, other, pid, doctor,
                                         ended_at=began, ended_by="system", started=False))

    async def both() -> bool:
        return len(await encounters(records, pid)) == 2

    await eventually(both)
    assert sorted(e["status"] for e in await encounters(records, pid)) == [
        "finished", "planned"]
