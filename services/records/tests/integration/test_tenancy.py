"""Staff reach the records of their hospitals' patients only (issue 16): hospitals A and B.

``records:read_any`` (nurses) reads the records of patients of the caller's hospitals;
another hospital's answer exactly as missing ones. ``encounters:open_any`` opens walk-ins
only at the caller's hospitals (403 elsewhere) and finishes only their encounters (404).
Memberships arrive as ``staff.assigned`` / ``staff.removed``, as in production.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts import appointment as appt
from healthflow.contracts.hospital import HospitalVerified
from healthflow.devkit.testing import eventually

from .conftest import Records, appointment_event, hospital_event

A, B = "h1", "h2"
ENTRY = {"type": "Observation", "text": "Throat", "value_text": "red, swollen tonsils"}


async def patient_at(records: Records, hospital: str, doctor: str) -> dict[str, str]:
    """A patient booked at ``hospital`` (an appointment event with its ``hospital_ids``),
    then seen there as a walk-in with one entry: the ids of patient, encounter, entry."""
    pid = await records.register()
    await records.send(appointment_event(appt.AppointmentBooked, f"a-{pid}", pid, doctor,
                                         location_id=hospital, hospital_ids=[hospital]))
    opened = await records.client.post(
        "/api/v1/encounters", headers=records.as_(f"desk-{hospital}", "receptionist"),
        json={"patient_id": pid, "practitioner_id": doctor, "hospital_id": hospital})
    assert opened.status_code == 201, opened.text
    written = await records.client.post(
        f"/api/v1/records/encounters/{opened.json()['id']}/entries",
        headers=records.as_(doctor, "doctor"), json={"entry": ENTRY})
    assert written.status_code == 201, written.text
    return {"patient": pid, "encounter": opened.json()["id"], "entry": written.json()["id"]}


async def two_hospitals(records: Records) -> dict[str, dict[str, str]]:
    await records.send(hospital_event(HospitalVerified, B, 1, status="verified",
                                      verified_at=datetime.now(UTC)))

    async def verified() -> bool:
        return await records.runtime.db["hospitals"].count_documents({"_id": B}) == 1

    await eventually(verified, message="hospital.verified never applied")
    await records.staff("desk-h1", "receptionist", A)
    await records.staff("desk-h2", "receptionist", B)
    return {A: await patient_at(records, A, "doc-a"), B: await patient_at(records, B, "doc-b")}


def reads(ids: dict[str, str]) -> list[str]:
    """Every read of a patient's record a nurse (``records:read_any``) may make."""
    pid = ids["patient"]
    return [f"/api/v1/encounters/{ids['encounter']}",
            f"/api/v1/encounters?patient_id={pid}",
            f"/api/v1/records/encounters/{ids['encounter']}/entries",
            f"/api/v1/records/entries/{ids['entry']}",
            f"/api/v1/records/entries/{ids['entry']}/history",
            f"/api/v1/care-plans?patient_id={pid}",
            f"/api/v1/procedures?patient_id={pid}",
            f"/api/v1/documents?patient_id={pid}",
            f"/api/v1/fhir/Patient/{pid}/$everything"]


MISSING = {"patient": "pat-missing", "encounter": "enc-missing", "entry": "ent-missing"}


def shape(response: httpx.Response, ids: dict[str, str]) -> tuple[int, Any]:
    """Status and problem body with the asked ids replaced, to compare answers."""
    text = response.text
    for key, value in ids.items():
        text = text.replace(value, f"<{key}>")
    return response.status_code, text


async def test_a_nurse_of_a_reads_only_records_of_patients_of_a(records: Records) -> None:
    ids = await two_hospitals(records)
    await records.staff("nurse-a", "nurse", A)
    nurse = records.as_("nurse-a", "nurse")
    for url in reads(ids[A]):
        assert (await records.client.get(url, headers=nurse)).status_code == 200, url
    before = len(await records.outbox("record.accessed"))
    for there, absent in zip(reads(ids[B]), reads(MISSING), strict=True):
        elsewhere = await records.client.get(there, headers=nurse)
        missing = await records.client.get(absent, headers=nurse)
        assert elsewhere.status_code == 404, (there, elsewhere.text)
        assert shape(elsewhere, ids[B]) == shape(missing, MISSING), there
    assert len(await records.outbox("record.accessed")) == before  # nothing was read

    # roles add up: a nurse who is an admin too reads everywhere
    platform = records.tokens.headers("nurse-admin", roles=["nurse", "admin"])
    for url in reads(ids[B]):
        assert (await records.client.get(url, headers=platform)).status_code == 200, url


async def test_walk_ins_open_and_finish_only_at_the_callers_hospitals(records: Records
                                                                     ) -> None:
    ids = await two_hospitals(records)
    await records.staff("nurse-a", "nurse", A)
    desk_a = records.as_("desk-h1", "receptionist")
    pid = ids[B]["patient"]
    refused = await records.client.post("/api/v1/encounters", headers=desk_a, json={
        "patient_id": pid, "practitioner_id": "doc-a", "hospital_id": B})
    assert refused.status_code == 403, refused.text
    assert B in refused.json()["detail"]
    nowhere = await records.client.post(
        "/api/v1/encounters", headers=records.as_("desk-none", "receptionist"),
        json={"patient_id": pid, "practitioner_id": "doc-a"})
    assert nowhere.status_code == 403, nowhere.text

    elsewhere = await records.client.post(
        f"/api/v1/encounters/{ids[B]['encounter']}/finish", headers=desk_a)
    missing = await records.client.post("/api/v1/encounters/enc-missing/finish",
                                        headers=desk_a)
    assert elsewhere.status_code == 404, elsewhere.text
    assert shape(elsewhere, ids[B]) == shape(missing, MISSING)
    assert (await records.client.post(f"/api/v1/encounters/{ids[A]['encounter']}/finish",
                                      headers=desk_a)).status_code == 200

    # a walk-in at A makes B's patient one of A's too: A's nurse now reads their record
    nurse = records.as_("nurse-a", "nurse")
    assert (await records.client.get(f"/api/v1/encounters?patient_id={pid}",
                                     headers=nurse)).status_code == 404
    opened = await records.client.post("/api/v1/encounters", headers=desk_a, json={
        "patient_id": pid, "practitioner_id": "doc-a", "hospital_id": A})
    assert opened.status_code == 201, opened.text
    listed = await records.client.get(f"/api/v1/encounters?patient_id={pid}", headers=nurse)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 3, listed.text


async def test_a_removed_membership_ends_a_nurses_reads(records: Records) -> None:
    ids = await two_hospitals(records)
    membership = await records.staff("nurse-gone", "nurse", A)
    nurse = records.as_("nurse-gone", "nurse")
    url = f"/api/v1/encounters/{ids[A]['encounter']}"
    assert (await records.client.get(url, headers=nurse)).status_code == 200
    removed = {**membership, "removed_at": datetime.now(UTC).isoformat()}
    await records.send(records_event("staff.removed", removed))
    assert (await records.client.get(url, headers=nurse)).status_code == 404
    await records.send(records_event("staff.assigned", membership))  # a late redelivery
    assert (await records.client.get(url, headers=nurse)).status_code == 404


def records_event(type_: str, data: dict[str, Any]) -> CloudEvent:
    """A ``staff.*`` event as the hospital service publishes it."""
    return CloudEvent(source="/healthflow/hospital", type=type_,
                      subject=f"hospital/{data['hospital_id']}", data=data)
