"""The clinical record through the gateway (issue 11, first slice), on the session's platform.

A patient books a verified doctor; the doctor checks the patient in and the
records service opens the encounter from ``appointment.checked_in``; the doctor
writes a diagnosis (ICD-10) and a blood pressure (LOINC, UCUM) and corrects it;
the patient reads their record and its FHIR R4 export, which validates with the
``fhir.resources`` R4B models; a doctor without a care relationship is refused at
every step; completing the appointment finishes the encounter; the audit log holds
the record's events.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    User,
    assert_problem,
    audit_events,
    create_doctor,
    create_staff,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    weekly_hours,
)
from .test_care_journey import TZ, book, local, next_weekday, slots

BLOOD_PRESSURE = {"type": "Observation", "code": "85354-9", "components": [
    {"code": "8480-6", "value": 182, "unit": "mm[Hg]"},
    {"code": "8462-4", "value": 84, "unit": "mm[Hg]"}]}


async def checked_in_appointment(api: Any, admin: User) -> tuple[User, User, dict[str, Any]]:
    """A verified doctor with Monday hours, a patient booked with them, checked in."""
    hospital = await register_hospital(api, admin, f"Records Klinik {uuid.uuid4().hex[:6]}")
    doctor, _ = await create_doctor(api, admin, family=f"Akte{uuid.uuid4().hex[:5]}",
                                    affiliations=[{"hospital_id": hospital["id"]}])
    await publish_availability(api, doctor, weekly_hours(hospital["id"], days=["mon"]))
    patient = await register_patient(api, "records")
    monday = next_weekday(1)
    free: list[datetime] = []

    async def has_slots() -> bool:
        nonlocal free
        response = await api.get("/api/v1/slots", headers=patient.headers, params={
            "doctor_id": doctor.id, "from": local(monday, 0).isoformat(),
            "to": local(monday + timedelta(days=1), 0).isoformat()})
        if response.status_code != 200:
            return False  # the schedule is still on its way
        free = await slots(api, patient, doctor.id, local(monday, 0),
                           local(monday + timedelta(days=1), 0))
        return bool(free)

    await eventually(has_slots, within=20, message="the doctor's slots never appeared")
    appointment = ok(await book(api, patient, doctor.id, free[0].astimezone(TZ)), 201)
    ok(await api.post(f"/api/v1/appointments/{appointment['id']}/check-in",
                      headers=doctor.headers))
    return patient, doctor, appointment


async def refused_everywhere(api: Any, stranger: User, encounter_id: str, entry_id: str,
                             everything: str) -> None:
    """A doctor without a care relationship gets 403 ``not-treating`` at every step."""
    entries_url = f"/api/v1/records/encounters/{encounter_id}/entries"
    for method, url, body in (
            ("GET", f"/api/v1/encounters/{encounter_id}", None),
            ("GET", entries_url, None),
            ("POST", entries_url, {"entry": {"type": "Condition", "text": "x"}}),
            ("GET", f"/api/v1/records/entries/{entry_id}/history", None),
            ("POST", f"/api/v1/encounters/{encounter_id}/finish", None),
            ("GET", everything, None),
            # opening an encounter of their own is not a way in either
            ("POST", "/api/v1/encounters", {"patient_id": everything.split("/")[-2]}),
            ("GET", everything, None)):
        assert_problem(await api.request(method, url, headers=stranger.headers, json=body),
                       403, "not-treating")


async def finishes_and_is_audited(api: Any, doctor: User, patient: User, compliance: User,
                                  appointment: dict[str, Any], encounter: dict[str, Any]
                                  ) -> None:
    """Completing the appointment finishes the encounter; the audit log has the record's
    events."""
    ok(await api.post(f"/api/v1/appointments/{appointment['id']}/complete",
                      headers=doctor.headers))

    async def finished() -> bool:
        got = ok(await api.get(f"/api/v1/encounters/{encounter['id']}",
                               headers=patient.headers))
        return bool(got["status"] == "finished")

    await eventually(finished, within=20, message="completion never finished it")

    async def audited() -> bool:
        types = {e["type"] for e in await audit_events(api, compliance, patient=patient.id)}
        return {"encounter.started", "encounter.finished", "record.entry_added",
                "record.entry_corrected", "record.accessed"} <= types

    await eventually(audited, within=20, message="the record's events never reached audit")


async def test_a_consultation_is_recorded_and_exported_as_fhir(
        platform: RunningPlatform, admin: User, compliance: User) -> None:
    async with platform.client() as api:
        patient, doctor, appointment = await checked_in_appointment(api, admin)
        stranger = await create_staff(api, admin, ["doctor"], label="dr-stranger")
        listing: list[dict[str, Any]] = []

        async def encounter_started() -> bool:
            nonlocal listing
            response = await api.get("/api/v1/encounters", headers=patient.headers,
                                     params={"patient_id": patient.id})
            listing = ok(response)["items"]
            return bool(listing) and listing[0]["status"] == "in-progress"

        await eventually(encounter_started, within=20, message="no encounter at check-in")
        encounter = listing[0]
        assert (encounter["appointment_id"], encounter["class"], encounter["practitioner_id"]
                ) == (appointment["id"], "AMB", doctor.id)

        entries_url = f"/api/v1/records/encounters/{encounter['id']}/entries"
        diagnosis = ok(await api.post(entries_url, headers=doctor.headers, json={
            "entry": {"type": "Condition", "code": "I10"}}), 201)
        assert diagnosis["content"]["code"]["display"] == "Essential (primary) hypertension"
        pressure = ok(await api.post(entries_url, headers=doctor.headers,
                                     json={"entry": BLOOD_PRESSURE}), 201)
        assert_problem(await api.post(entries_url, headers=doctor.headers, json={
            "entry": {"type": "Observation", "code": "8310-5",
                      "quantity": {"value": 38, "unit": "degC"}}}), 422)
        fixed = {**BLOOD_PRESSURE, "components": [
            {"code": "8480-6", "value": 128, "unit": "mm[Hg]"}, BLOOD_PRESSURE["components"][1]]}
        corrected = ok(await api.post(f"/api/v1/records/entries/{pressure['id']}/corrections",
                                      headers=doctor.headers, json={
                                          "version": 1, "reason": "misread the gauge",
                                          "entry": fixed}))
        assert corrected["version"] == 2

        everything = f"/api/v1/fhir/Patient/{patient.id}/$everything"
        await refused_everywhere(api, stranger, encounter["id"], pressure["id"], everything)

        # the patient reads their record and its FHIR export, which validates
        history = ok(await api.get(f"/api/v1/records/entries/{pressure['id']}/history",
                                   headers=patient.headers))
        assert [(v["version"], v["reason"]) for v in history] == [
            (1, None), (2, "misread the gauge")]
        exported = await api.get(everything, headers=patient.headers)
        bundle = Bundle.model_validate(ok(exported))
        assert exported.headers["content-type"].startswith("application/fhir+json")
        kinds = sorted(type(e.resource).__name__ for e in bundle.entry)
        assert kinds == ["Condition", "Encounter", "Observation", "Patient"], kinds
        gateway = str(api.base_url).rstrip("/") + "/api/v1/fhir/"
        assert all(e.fullUrl.startswith(gateway) for e in bundle.entry), (  # not internal
            [e.fullUrl for e in bundle.entry], gateway)
        ok(await api.get(everything, headers=doctor.headers))

        await finishes_and_is_audited(api, doctor, patient, compliance, appointment, encounter)
