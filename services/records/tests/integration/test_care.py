"""Care relationships (FHIR CareTeam) end: at a cancellation, whatever order its events
arrive in, and ``care_after_encounter_days`` after the encounter finished; break-the-glass
gives a doctor without one a logged, time-boxed read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts import appointment as appt
from healthflow.devkit.testing import eventually
from healthflow.records import care
from healthflow.records.domain import (
    EncounterClass,
    EncounterOpening,
    EncounterStatus,
    new_encounter,
)
from healthflow.records.settings import settings_of

from .conftest import START, Records, appointment_event

DAY = timedelta(days=1)


def at(event: CloudEvent, when: datetime) -> CloudEvent:
    """``event`` as published at ``when`` (aware UTC), under a new id (a republication
    the inbox does not recognise as the same delivery)."""
    return CloudEvent(**{**event.model_dump(), "id": str(uuid.uuid4()), "time": when})


async def applied(records: Records, *sent: CloudEvent) -> None:
    """Wait until every event in ``sent`` was handled (its inbox record committed)."""
    ids = [e.id for e in sent]

    async def done() -> bool:
        return await records.runtime.db["inbox"].count_documents({"_id": {"$in": ids}}) == len(
            ids)

    await eventually(done, message="the events were never applied")


async def encounters_as(records: Records, patient_id: str, doctor: str) -> int:
    response = await records.client.get("/api/v1/encounters", params={"patient_id": patient_id},
                                        headers=records.as_(doctor, "doctor"))
    if response.status_code == 403:
        assert response.json()["type"].endswith("/not-treating"), response.text
    return response.status_code


async def test_a_late_or_republished_booking_after_its_cancellation_grants_nothing(
        records: Records) -> None:
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-late"
    now = datetime.now(UTC)
    booked = appointment_event(appt.AppointmentBooked, aid, pid, doctor)
    cancelled = at(appointment_event(appt.AppointmentCancelled, aid, pid, doctor), now - DAY)
    late = at(booked, now - 2 * DAY)  # booked before the cancellation, delivered after it
    again = at(booked, now)  # the booking published again, later than the cancellation
    for event in (cancelled, late, again):
        await records.send(event)
    await applied(records, cancelled, late, again)
    assert await encounters_as(records, pid, doctor) == 403
    [relationship] = await records.runtime.db["care_team"].find({"patient_id": pid}).to_list()
    assert relationship["status"] == "inactive" and relationship["period"]["end"] is not None


async def test_a_booking_then_its_cancellation_ends_the_care_at_once(records: Records) -> None:
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-in-order"
    now = datetime.now(UTC)
    booked = at(appointment_event(appt.AppointmentBooked, aid, pid, doctor), now - 2 * DAY)
    await records.send(booked)
    await applied(records, booked)
    assert await encounters_as(records, pid, doctor) == 200
    cancelled = at(appointment_event(appt.AppointmentCancelled, aid, pid, doctor), now - DAY)
    redelivered = at(booked, now - 2 * DAY)
    for event in (cancelled, redelivered):
        await records.send(event)
    await applied(records, cancelled, redelivered)
    assert await encounters_as(records, pid, doctor) == 403


async def test_a_no_show_ends_the_care_too(records: Records) -> None:
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-absent"
    now = datetime.now(UTC)
    booked = at(appointment_event(appt.AppointmentBooked, aid, pid, doctor), now - DAY)
    absent = at(appointment_event(appt.AppointmentNoShow, aid, pid, doctor), now)
    await records.send(booked)
    await applied(records, booked)
    assert await encounters_as(records, pid, doctor) == 200
    await records.send(absent)
    await applied(records, absent)
    assert await encounters_as(records, pid, doctor) == 403


async def test_a_booking_never_completed_ends_the_period_after_its_planned_end(
        records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither completed, cancelled nor marked a no-show, the relationship still ends:
    ``care_after_encounter_days`` after the appointment's planned end, which a
    reschedule moves."""
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-open"
    booked = appointment_event(appt.AppointmentBooked, aid, pid, doctor)
    await records.send(booked)
    await applied(records, booked)
    end = START + timedelta(minutes=30)
    monkeypatch.setattr(care, "clock", lambda: end + 90 * DAY - timedelta(seconds=1))
    assert await encounters_as(records, pid, doctor) == 200
    monkeypatch.setattr(care, "clock", lambda: end + 90 * DAY)
    assert await encounters_as(records, pid, doctor) == 403
    later = START + 200 * DAY
    moved = appointment_event(appt.AppointmentRescheduled, aid, pid, doctor, start=later,
                              end=later + timedelta(minutes=30))
    await records.send(moved)
    await applied(records, moved)
    assert await encounters_as(records, pid, doctor) == 200  # the new end + 90 days
    monkeypatch.setattr(care, "clock", lambda: later + timedelta(minutes=30) + 90 * DAY)
    assert await encounters_as(records, pid, doctor) == 403


async def completed_days_ago(records: Records, days: float) -> tuple[str, str]:
    """A patient and a doctor whose only appointment was completed ``days`` ago (the
    events carry their past times)."""
    pid, doctor, aid = await records.register(), f"doc-{uuid.uuid4().hex[:6]}", "a-done"
    done = datetime.now(UTC) - timedelta(days=days)
    sent = [at(appointment_event(model, aid, pid, doctor), done - offset) for model, offset in (
        (appt.AppointmentBooked, 7 * DAY), (appt.AppointmentCheckedIn, timedelta(hours=1)),
        (appt.AppointmentCompleted, timedelta(0)))]
    for event in sent:
        await records.send(event)
    await applied(records, *sent)
    return pid, doctor


async def test_care_ends_the_configured_days_after_the_encounter_was_completed(
        records: Records) -> None:
    """On the real clock: 90 days (the default) after completion, not before."""
    assert settings_of(records.runtime).care_after_encounter_days == 90
    recent_patient, recent_doctor = await completed_days_ago(records, 89)
    old_patient, old_doctor = await completed_days_ago(records, 91)
    assert await encounters_as(records, recent_patient, recent_doctor) == 200
    assert await encounters_as(records, old_patient, old_doctor) == 403


async def test_a_walk_in_keeps_its_doctor_until_the_period_after_it_finished(
        records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    pid, doctor = await records.register(), f"doc-{uuid.uuid4().hex[:6]}"
    walk_in = await records.walk_in(pid, doctor)
    finished = await records.client.post(f"/api/v1/encounters/{walk_in['id']}/finish",
                                         headers=records.as_(doctor, "doctor"))
    assert finished.status_code == 200, finished.text
    end = datetime.fromisoformat(finished.json()["period"]["end"])
    monkeypatch.setattr(care, "clock", lambda: end + 90 * DAY - timedelta(seconds=1))
    assert await encounters_as(records, pid, doctor) == 200
    monkeypatch.setattr(care, "clock", lambda: end + 90 * DAY)
    assert await encounters_as(records, pid, doctor) == 403
    follow_up = await records.client.post("/api/v1/encounters",
                                          headers=records.as_(doctor, "doctor"),
                                          json={"patient_id": pid})
    assert follow_up.status_code == 403  # no new encounter on an ended relationship


def glass(patient_id: str) -> str:
    return f"/api/v1/records/patients/{patient_id}/break-the-glass"


async def test_break_the_glass_needs_a_reason_and_the_doctor_role(records: Records) -> None:
    pid, doctor = await records.register(), records.as_("doc-er", "doctor")
    for body in ({}, {"reason": "urgent"}, {"reason": "x" * 501}):
        refused = await records.client.post(glass(pid), headers=doctor, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    reason = {"reason": "unconscious in the emergency room, allergies unknown"}
    for role in ("patient", "nurse"):
        denied = await records.client.post(glass(pid), headers=records.as_("u-x", role),
                                           json=reason)
        assert denied.status_code == 403, (role, denied.text)
    unknown = await records.client.post(glass("pat-nobody"), headers=doctor, json=reason)
    assert unknown.status_code == 422 and unknown.json()["type"].endswith("/unknown-patient")
    own = await records.client.post(glass(pid), headers=records.as_(pid, "doctor"), json=reason)
    assert own.status_code == 403 and own.json()["type"].endswith("/own-record")
    assert await records.outbox("record.emergency_access_granted") == []


async def test_break_the_glass_reads_are_logged_until_the_grant_expires(
        records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    pid, doctor = await records.register(), "doc-glass"
    other = await records.walk_in(pid, "doc-family")
    headers = records.as_(doctor, "doctor")
    assert await encounters_as(records, pid, doctor) == 403
    reason = "unconscious in the emergency room, allergies unknown"
    granted = await records.client.post(glass(pid), headers=headers, json={"reason": reason})
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    expires = datetime.fromisoformat(grant["expires_at"])
    assert expires - datetime.fromisoformat(grant["granted_at"]) == timedelta(minutes=60)

    assert await encounters_as(records, pid, doctor) == 200
    read = await records.client.get(f"/api/v1/encounters/{other['id']}", headers=headers)
    assert read.status_code == 200
    finish = await records.client.post(f"/api/v1/encounters/{other['id']}/finish",
                                       headers=headers)
    assert finish.status_code == 403  # the grant reads, never writes

    accessed = [e for e in await records.outbox("record.accessed")
                if e["data"]["accessor_id"] == doctor]
    assert len(accessed) == 2 and all(
        (e["data"]["accessor_role"], e["data"]["purpose"], e["data"]["grant_id"])
        == ("break_the_glass", "emergency", grant["id"]) for e in accessed)
    [event] = await records.outbox("record.emergency_access_granted")
    assert event["subject"] == f"patient/{pid}" and event["patientid"] == pid
    assert event["data"]["grant_id"] == grant["id"] and event["data"]["accessor_id"] == doctor
    assert reason not in str(event)  # the reason stays in the records service

    monkeypatch.setattr(care, "clock", lambda: expires - timedelta(seconds=1))
    assert await encounters_as(records, pid, doctor) == 200
    monkeypatch.setattr(care, "clock", lambda: expires)
    assert await encounters_as(records, pid, doctor) == 403


async def test_relationships_of_the_older_read_model_are_adopted_at_start(
        records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy ends nobody's access: the older ``care`` documents become ``care_team``
    relationships (an appointment for the configured days from the move, as its planned
    end was not kept and the old model never dropped no-shows; a finished encounter its
    period after the finish; a cancelled one nothing), the old collection goes, and a
    second run (a restart during the move) makes nothing twice."""
    assert records.runtime.on_start is care.adopt_legacy  # the app runs it at every start
    pid = await records.register()
    booked, recent, old, cancelled = (f"doc-{n}-{uuid.uuid4().hex[:4]}" for n in "brox")
    now = datetime.now(UTC)
    db = records.runtime.db

    def encounter(doctor: str, status: EncounterStatus, days_ago: int) -> dict:
        at = now - days_ago * DAY
        doc = new_encounter(EncounterOpening(f"enc-{doctor}", pid, doctor, EncounterClass.AMB,
                                             status, doctor, at))
        finished = status is EncounterStatus.FINISHED
        return doc | {"period": {"start": at, "end": at if finished else None}}

    await db["encounters"].insert_many([
        encounter(recent, EncounterStatus.FINISHED, 10),
        encounter(old, EncounterStatus.FINISHED, 100),
        encounter(cancelled, EncounterStatus.CANCELLED, 5)])
    await db[care.LEGACY_CARE].insert_many([
        {"_id": f"{doctor}:{pid}", "doctor_user_id": doctor, "patient_id": pid,
         "appointments": appointments, "encounters": encounters}
        for doctor, appointments, encounters in (
            (booked, ["a-legacy"], []), (recent, [], [f"enc-{recent}"]),
            (old, [], [f"enc-{old}"]), (cancelled, [], [f"enc-{cancelled}"]))])
    await care.adopt_legacy(records.runtime)
    assert await encounters_as(records, pid, booked) == 200
    assert await encounters_as(records, pid, recent) == 200  # finished 10 days ago
    assert await encounters_as(records, pid, old) == 403  # 100 days ago: past the 90
    assert await encounters_as(records, pid, cancelled) == 403
    assert care.LEGACY_CARE not in await db.list_collection_names()
    made = await db["care_team"].count_documents({"patient_id": pid})
    await db[care.LEGACY_CARE].insert_one({"_id": f"{booked}:{pid}", "doctor_user_id": booked,
                                           "patient_id": pid, "appointments": ["a-legacy"],
                                           "encounters": []})
    await care.adopt_legacy(records.runtime)
    assert await db["care_team"].count_documents({"patient_id": pid}) == made == 3
    monkeypatch.setattr(care, "clock", lambda: now + 90 * DAY + timedelta(minutes=1))
    assert await encounters_as(records, pid, booked) == 403  # never completed: ended
    monkeypatch.undo()
    # a cancellation arriving after the move still ends the adopted relationship
    cancel = appointment_event(appt.AppointmentCancelled, "a-legacy", pid, booked)
    await records.send(cancel)
    await applied(records, cancel)
    assert await encounters_as(records, pid, booked) == 403
