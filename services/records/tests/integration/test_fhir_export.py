"""``GET /api/v1/fhir/Patient/{id}/$everything``: an R4 Bundle that validates (R4B models)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from healthflow.contracts import appointment as appt
from healthflow.devkit.testing import eventually

from .conftest import START, Records, appointment_event
from .test_entries import BLOOD_PRESSURE, DIAGNOSIS, MEDICATION

FINDING = {"type": "Observation", "text": "Throat", "value_text": "red, swollen tonsils"}
WEIGHT = {"type": "Observation", "code": "29463-7", "quantity": {"value": 71.5, "unit": "kg"}}


async def a_record(records: Records) -> tuple[str, list[dict[str, Any]]]:
    """A patient with a planned appointment and a walk-in holding one entry of each kind,
    one corrected and one withdrawn."""
    pid = await records.register()
    await records.send(appointment_event(appt.AppointmentBooked, f"a-{pid}", pid, "doc-f",
                                         mode="online", hospital_ids=["h1"]))
    doctor = records.as_("doc-f", "doctor")
    opened = (await records.client.post("/api/v1/encounters", headers=doctor,
                                        json={"patient_id": pid})).json()
    written = []
    for entry in (DIAGNOSIS, BLOOD_PRESSURE, MEDICATION, FINDING, WEIGHT,
                  {"type": "Condition", "text": "Anxiety about results"}):
        response = await records.client.post(
            f"/api/v1/records/encounters/{opened['id']}/entries", headers=doctor,
            json={"entry": entry})
        assert response.status_code == 201, response.text
        written.append(response.json())
    fixed = {**WEIGHT, "quantity": {"value": 75.1, "unit": "kg"}}
    assert (await records.client.post(
        f"/api/v1/records/entries/{written[4]['id']}/corrections", headers=doctor,
        json={"version": 1, "reason": "scale not zeroed", "entry": fixed})).status_code == 200
    for index in (0, 2):
        assert (await records.client.post(
            f"/api/v1/records/entries/{written[index]['id']}/entered-in-error",
            headers=doctor, json={"version": 1, "reason": "wrong chart"})).status_code == 200

    async def planned() -> bool:
        return await records.runtime.db["encounters"].count_documents({"patient_id": pid}) == 2

    await eventually(planned)
    return pid, written


def by_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def test_the_export_is_a_valid_r4_bundle_of_the_whole_record(records: Records) -> None:
    pid, written = await a_record(records)
    response = await records.client.get(f"/api/v1/fhir/Patient/{pid}/$everything",
                                        headers=records.as_(pid, "patient"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    parsed = Bundle.model_validate(bundle)  # R4B models: structure, types, cardinality
    *matches, outcome = parsed.entry
    assert parsed.type == "searchset" and len(matches) == 9
    assert Counter(type(e.resource).__name__ for e in matches) == {
        "Patient": 1, "Encounter": 2, "Condition": 2, "Observation": 3,
        "MedicationStatement": 1}
    assert all(e.search.mode == "match" for e in matches)
    assert all(e["fullUrl"].endswith(f"/api/v1/fhir/{e['resource']['resourceType']}/"
                                     f"{e['resource']['id']}") for e in bundle["entry"][:-1])
    # No prescription service answers (a closed port): still 200, and the Bundle says so.
    assert outcome.search.mode == "outcome" and outcome.fullUrl.startswith("urn:uuid:")
    [issue] = outcome.resource.issue
    assert (issue.severity, issue.code) == ("warning", "incomplete")
    assert "Prescriptions (MedicationRequest) are missing" in issue.diagnostics
    assert "cannot be reached" in issue.diagnostics

    encounters = {e["status"]: e for e in by_type(bundle, "Encounter")}
    assert encounters["planned"]["class"]["code"] == "VR"
    assert encounters["planned"]["period"]["start"] == START.strftime("%Y-%m-%dT%H:00:00.000Z")
    assert encounters["in-progress"]["class"]["code"] == "AMB"
    assert encounters["in-progress"]["subject"] == {"reference": f"Patient/{pid}"}

    conditions = {c["id"]: c for c in by_type(bundle, "Condition")}
    withdrawn = conditions[written[0]["id"]]
    assert withdrawn["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in withdrawn  # invariant con-5
    assert withdrawn["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10", "code": "J06.9",
        "display": "Acute upper respiratory infection, unspecified"}
    text_only = conditions[written[5]["id"]]
    assert text_only["code"] == {"text": "Anxiety about results"}
    assert text_only["clinicalStatus"]["coding"][0]["code"] == "active"

    observations = {o["id"]: o for o in by_type(bundle, "Observation")}
    pressure = observations[written[1]["id"]]
    assert pressure["status"] == "final" and pressure["code"]["coding"][0]["code"] == "85354-9"
    assert [c["valueQuantity"]["code"] for c in pressure["component"]] == ["mm[Hg]"] * 2
    assert pressure["category"][0]["coding"][0]["code"] == "vital-signs"
    weight = observations[written[4]["id"]]
    assert (weight["status"], weight["meta"]["versionId"]) == ("amended", "2")
    assert weight["valueQuantity"] == {"value": 75.1, "unit": "kg",
                                       "system": "http://unitsofmeasure.org", "code": "kg"}
    assert observations[written[3]["id"]]["valueString"] == "red, swollen tonsils"
    [medication] = by_type(bundle, "MedicationStatement")
    assert medication["status"] == "entered-in-error"
    assert medication["context"] == {"reference": f"Encounter/{encounters['in-progress']['id']}"}


async def test_the_export_is_for_the_patient_treating_doctors_and_staff(
        records: Records) -> None:
    pid, _ = await a_record(records)
    url = f"/api/v1/fhir/Patient/{pid}/$everything"
    stranger = await records.register()
    statuses = {who: (await records.client.get(url, headers=records.as_(*who))).status_code
                for who in [("doc-f", "doctor"), ("n-2", "nurse"), ("doc-y", "doctor"),
                            (stranger, "patient"), ("r-1", "receptionist")]}
    assert statuses == {("doc-f", "doctor"): 200, ("n-2", "nurse"): 200,
                        ("doc-y", "doctor"): 403, (stranger, "patient"): 403,
                        ("r-1", "receptionist"): 403}
    scopes = {(e["data"]["accessor_id"], e["data"]["scope"])
              for e in await records.outbox("record.accessed")}
    assert {("doc-f", "export"), ("n-2", "export")} <= scopes
    unknown = await records.client.get("/api/v1/fhir/Patient/nobody/$everything",
                                       headers=records.as_("n-2", "nurse"))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
