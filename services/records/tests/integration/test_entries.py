"""Record entries: written by a treating doctor, corrected as new versions, withdrawn."""

from __future__ import annotations

from typing import Any

import pytest

from healthflow.contracts import appointment as appt
from healthflow.devkit.testing import eventually

from .conftest import Records, appointment_event

BLOOD_PRESSURE = {"type": "Observation", "code": "85354-9", "components": [
    {"code": "8480-6", "value": 128, "unit": "mm[Hg]"},
    {"code": "8462-4", "value": 82, "unit": "mm[Hg]"}]}
DIAGNOSIS = {"type": "Condition", "code": "J06.9", "note": "since Monday"}
MEDICATION = {"type": "MedicationStatement", "medication": "Ibuprofen 400 mg tablets",
              "dosage": "1 tablet up to three times a day", "status": "active"}


@pytest.fixture
async def visit(records: Records) -> dict[str, Any]:
    """A registered patient and a walk-in encounter of ``doc-e``, in progress."""
    pid = await records.register()
    opened = await records.walk_in(pid, "doc-e")
    return {"patient": pid, "encounter": opened["id"],
            "doctor": records.as_("doc-e", "doctor"), "own": records.as_(pid, "patient")}


async def add(records: Records, visit: dict[str, Any], entry: dict[str, Any],
              headers: dict[str, str] | None = None) -> Any:
    return await records.client.post(
        f"/api/v1/records/encounters/{visit['encounter']}/entries",
        headers=headers or visit["doctor"], json={"entry": entry})


async def test_a_treating_doctor_writes_each_kind_and_the_patient_reads_them(
        records: Records, visit: dict[str, Any]) -> None:
    written = [await add(records, visit, e) for e in (DIAGNOSIS, BLOOD_PRESSURE, MEDICATION)]
    assert [w.status_code for w in written] == [201, 201, 201], [w.text for w in written]
    condition = written[0].json()
    assert condition["content"]["code"] == {
        "system": "http://hl7.org/fhir/sid/icd-10", "code": "J06.9",
        "display": "Acute upper respiratory infection, unspecified"}
    assert (condition["version"], condition["status"], condition["recorded_by"]) == (
        1, "current", "doc-e")
    assert written[1].json()["content"]["effective"] is not None  # defaults to the writing
    listed = await records.client.get(
        f"/api/v1/records/encounters/{visit['encounter']}/entries", headers=visit["own"])
    assert [e["resource_type"] for e in listed.json()["items"]] == [
        "Condition", "Observation", "MedicationStatement"]
    added = await records.outbox("record.entry_added")
    assert sorted(e["data"]["resource_type"] for e in added) == [
        "Condition", "MedicationStatement", "Observation"]
    assert all(e["patientid"] == visit["patient"] and "J06" not in str(e) for e in added)


async def test_bad_codes_strangers_and_planned_encounters_write_nothing(
        records: Records, visit: dict[str, Any]) -> None:
    bad_code = await add(records, visit, {"type": "Condition", "code": "E11"})
    assert bad_code.status_code == 422 and "E11.9" in bad_code.text
    bad_unit = await add(records, visit, {"type": "Observation", "code": "8310-5",
                                          "quantity": {"value": 38.2, "unit": "degC"}})
    assert bad_unit.status_code == 422 and "UCUM" in bad_unit.text
    stranger = await add(records, visit, DIAGNOSIS, records.as_("doc-x", "doctor"))
    assert stranger.status_code == 403 and stranger.json()["type"].endswith("/not-treating")
    assert (await add(records, visit, DIAGNOSIS, visit["own"])).status_code == 403
    await records.send(appointment_event(appt.AppointmentBooked, "a-e", visit["patient"],
                                         "doc-e"))

    async def planned() -> str | None:
        doc = await records.runtime.db["encounters"].find_one({"appointment_id": "a-e"})
        return doc["_id"] if doc else None

    await eventually(planned)
    early = await records.client.post(
        f"/api/v1/records/encounters/{await planned()}/entries", headers=visit["doctor"],
        json={"entry": DIAGNOSIS})
    assert early.status_code == 409 and early.json()["type"].endswith("/encounter-state")
    assert await records.runtime.db["entries"].count_documents({}) == 0
    assert await records.runtime.db["entry_versions"].count_documents({}) == 0


async def test_corrections_keep_every_version_with_who_and_why(
        records: Records, visit: dict[str, Any]) -> None:
    entry = (await add(records, visit, BLOOD_PRESSURE)).json()
    url = f"/api/v1/records/entries/{entry['id']}"
    fixed = {**BLOOD_PRESSURE, "components": [
        {"code": "8480-6", "value": 138, "unit": "mm[Hg]"},
        {"code": "8462-4", "value": 82, "unit": "mm[Hg]"}]}
    corrected = await records.client.post(f"{url}/corrections", headers=visit["doctor"], json={
        "version": 1, "reason": "digits swapped", "entry": fixed})
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["version"] == 2
    assert corrected.json()["content"]["effective"] == entry["content"]["effective"]
    stale = await records.client.post(f"{url}/corrections", headers=visit["doctor"], json={
        "version": 1, "reason": "again", "entry": BLOOD_PRESSURE})
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    other_kind = await records.client.post(f"{url}/corrections", headers=visit["doctor"], json={
        "version": 2, "reason": "kind", "entry": DIAGNOSIS})
    assert other_kind.status_code == 422
    withdrawn = await records.client.post(f"{url}/entered-in-error", headers=visit["doctor"],
                                          json={"version": 2, "reason": "wrong patient"})
    assert withdrawn.json()["status"] == "entered-in-error"
    after = await records.client.post(f"{url}/entered-in-error", headers=visit["doctor"],
                                      json={"version": 3, "reason": "twice"})
    assert after.status_code == 409
    history = (await records.client.get(f"{url}/history", headers=visit["own"])).json()
    assert [(v["version"], v["status"], v["author"], v["reason"]) for v in history] == [
        (1, "current", "doc-e", None), (2, "current", "doc-e", "digits swapped"),
        (3, "entered-in-error", "doc-e", "wrong patient")]
    assert history[0]["content"]["components"][0]["value"] == 128  # version 1 as written
    corrected_events = await records.outbox("record.entry_corrected")
    assert sorted((e["data"]["version"], e["data"]["status"]) for e in corrected_events) == [
        (2, "current"), (3, "entered-in-error")]
    assert all("wrong patient" not in str(e) for e in corrected_events)


async def test_another_patient_sees_no_entry_and_staff_reads_are_recorded(
        records: Records, visit: dict[str, Any]) -> None:
    entry = (await add(records, visit, MEDICATION)).json()
    url = f"/api/v1/records/entries/{entry['id']}"
    stranger = await records.register()
    assert (await records.client.get(url, headers=records.as_(stranger, "patient"))
            ).status_code == 404
    assert (await records.client.get(url, headers=visit["own"])).status_code == 200
    assert (await records.client.get(url, headers=records.as_("n-1", "nurse"))).status_code == 200
    assert (await records.client.get(url, headers=records.as_("acc", "accountant"))
            ).status_code == 403
    [accessed] = await records.outbox("record.accessed")
    assert accessed["data"]["accessor_id"] == "n-1" and accessed["data"]["scope"] == "entries"
