"""Treatment plans (CarePlan) and procedures (Procedure): versioned entries of an encounter,
a plan state machine, references checked, both in a valid R4 ``$everything``."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from .conftest import Records
from .test_entries import DIAGNOSIS

PLAN = {"title": "Tonsillitis treatment", "description": "Acute tonsillitis, bacterial",
        "goals": [{"description": "No fever within 3 days", "due": "2027-03-04"}],
        "activities": [{"kind": "medication", "description": "Amoxicillin 500 mg for 7 days"},
                       {"kind": "procedure", "description": "Throat swab"}]}


@pytest.fixture
async def visit(records: Records) -> dict[str, Any]:
    """A patient, a walk-in encounter of ``doc-p`` in progress, and a diagnosis in it."""
    pid = await records.register()
    encounter = (await records.walk_in(pid, "doc-p"))["id"]
    doctor = records.as_("doc-p", "doctor")
    diagnosis = await records.client.post(f"/api/v1/records/encounters/{encounter}/entries",
                                          headers=doctor, json={"entry": DIAGNOSIS})
    assert diagnosis.status_code == 201, diagnosis.text
    return {"patient": pid, "encounter": encounter, "doctor": doctor,
            "condition": diagnosis.json()["id"], "own": records.as_(pid, "patient")}


async def new_plan(records: Records, visit: dict[str, Any], **more: Any) -> Any:
    return await records.client.post(
        "/api/v1/care-plans", headers=visit["doctor"],
        json={**PLAN, "encounter_id": visit["encounter"], "addresses": [visit["condition"]],
              **more})


async def move(records: Records, visit: dict[str, Any], plan_id: str, version: int,
               status: str, reason: str | None = None) -> Any:
    return await records.client.post(f"/api/v1/care-plans/{plan_id}/status",
                                     headers=visit["doctor"],
                                     json={"version": version, "status": status,
                                           "reason": reason})


async def test_a_plan_goes_draft_active_completed_each_move_a_version_and_an_event(
        records: Records, visit: dict[str, Any]) -> None:
    created = await new_plan(records, visit)
    assert created.status_code == 201, created.text
    plan = created.json()
    assert (plan["resource_type"], plan["version"], plan["content"]["status"]) == (
        "CarePlan", 1, "draft")
    assert (await move(records, visit, plan["id"], 1, "completed")).status_code == 409
    active = await move(records, visit, plan["id"], 1, "active")
    assert active.status_code == 200 and active.json()["content"]["status"] == "active"
    stale = await move(records, visit, plan["id"], 1, "completed")
    assert stale.status_code == 409 and stale.json()["type"].endswith("/version-conflict")
    fixed = await records.client.post(
        f"/api/v1/care-plans/{plan['id']}/corrections", headers=visit["doctor"],
        json={"version": 2, "reason": "swab first", "plan": {**PLAN, "title": "Tonsillitis"}})
    assert fixed.status_code == 200, fixed.text
    assert (fixed.json()["content"]["status"], fixed.json()["version"]) == ("active", 3)
    done = await move(records, visit, plan["id"], 3, "completed")
    assert done.status_code == 200 and done.json()["version"] == 4
    again = await move(records, visit, plan["id"], 4, "revoked", "changed my mind")
    assert again.status_code == 409 and again.json()["type"].endswith("/careplan-state")
    history = (await records.client.get(f"/api/v1/records/entries/{plan['id']}/history",
                                        headers=visit["own"])).json()
    assert [v["content"]["status"] for v in history] == ["draft", "active", "active",
                                                         "completed"]
    updates = await records.outbox("careplan.updated")
    assert [(e["data"]["version"], e["data"]["status"]) for e in updates] == [
        (1, "draft"), (2, "active"), (3, "active"), (4, "completed")]
    assert all(e["patientid"] == visit["patient"] and "Tonsil" not in str(e) for e in updates)


async def test_revoking_needs_a_reason_and_bad_references_write_nothing(
        records: Records, visit: dict[str, Any]) -> None:
    plan = (await new_plan(records, visit, status="active")).json()
    no_reason = await move(records, visit, plan["id"], 1, "revoked")
    assert no_reason.status_code == 422
    other = await records.register()
    other_condition = (await records.client.post(
        f"/api/v1/records/encounters/{(await records.walk_in(other, 'doc-p'))['id']}/entries",
        headers=visit["doctor"], json={"entry": DIAGNOSIS})).json()["id"]
    before = await records.runtime.db["entries"].count_documents({})
    foreign = await new_plan(records, visit, addresses=[other_condition])
    assert foreign.status_code == 422 and foreign.json()["type"].endswith("/unknown-reference")
    stray = await records.client.post("/api/v1/procedures", headers=visit["doctor"], json={
        "encounter_id": visit["encounter"], "code_text": "Throat swab",
        "care_plan_id": "no-such-plan"})
    assert stray.status_code == 422 and stray.json()["type"].endswith("/unknown-reference")
    assert (await new_plan(records, visit)).status_code == 201  # the one write that counts
    refused = await records.client.post(
        "/api/v1/care-plans", headers=records.as_("doc-x", "doctor"),
        json={**PLAN, "encounter_id": visit["encounter"]})
    assert refused.status_code == 403 and refused.json()["type"].endswith("/not-treating")
    assert await records.runtime.db["entries"].count_documents({}) == before + 1
    revoked = await move(records, visit, plan["id"], 1, "revoked", "patient declined")
    assert revoked.status_code == 200 and revoked.json()["content"]["status"] == "revoked"


async def test_a_procedure_of_the_plan_and_both_in_a_valid_export(
        records: Records, visit: dict[str, Any]) -> None:
    plan = (await new_plan(records, visit, status="active")).json()
    done = await records.client.post("/api/v1/procedures", headers=visit["doctor"], json={
        "encounter_id": visit["encounter"], "code_text": "Throat swab",
        "care_plan_id": plan["id"], "performer_id": "nurse-s", "outcome": "sample taken"})
    assert done.status_code == 201, done.text
    procedure = done.json()
    assert procedure["content"]["performer_id"] == "nurse-s"
    assert procedure["content"]["performed"] is not None
    [recorded] = await records.outbox("procedure.recorded")
    assert recorded["data"] | {"procedure_id": procedure["id"], "care_plan_id": plan["id"],
                               "performer_id": "nurse-s", "status": "completed",
                               "appointment_id": None} == recorded["data"]
    assert "swab" not in str(recorded)
    not_done = await records.client.post("/api/v1/procedures", headers=visit["doctor"], json={
        "encounter_id": visit["encounter"], "code_text": "Blood sample", "status": "not-done",
        "status_reason": "patient refused"})
    assert not_done.status_code == 201, not_done.text
    withdrawn = await records.client.post(
        f"/api/v1/records/entries/{not_done.json()['id']}/entered-in-error",
        headers=visit["doctor"], json={"version": 1, "reason": "wrong patient"})
    assert withdrawn.status_code == 200

    listed = await records.client.get("/api/v1/procedures", headers=visit["own"],
                                      params={"patient_id": visit["patient"]})
    assert [p["id"] for p in listed.json()["items"]] == [procedure["id"],
                                                         not_done.json()["id"]]
    got = await records.client.get(f"/api/v1/care-plans/{procedure['id']}",
                                   headers=visit["own"])
    assert got.status_code == 404  # a procedure is not a plan
    bundle = (await records.client.get(f"/api/v1/fhir/Patient/{visit['patient']}/$everything",
                                       headers=visit["own"])).json()
    Bundle.model_validate(bundle)
    resources = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    exported_plan = resources[plan["id"]]
    assert (exported_plan["status"], exported_plan["intent"]) == ("active", "plan")
    assert exported_plan["addresses"] == [{"reference": f"Condition/{visit['condition']}"}]
    assert exported_plan["contained"][0]["lifecycleStatus"] == "active"
    assert exported_plan["goal"] == [{"reference": "#goal1"}]
    assert [a["detail"]["kind"] for a in exported_plan["activity"]] == [
        "MedicationRequest", "ServiceRequest"]
    exported = resources[procedure["id"]]
    assert exported["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
    assert exported["performer"] == [{"actor": {"reference": "Practitioner/nurse-s"}}]
    assert exported["outcome"] == {"text": "sample taken"}
    assert resources[not_done.json()["id"]]["status"] == "entered-in-error"


async def test_a_correction_without_a_performer_keeps_the_one_recorded(
        records: Records, visit: dict[str, Any]) -> None:
    done = await records.client.post("/api/v1/procedures", headers=visit["doctor"], json={
        "encounter_id": visit["encounter"], "code_text": "Throat swab",
        "performer_id": "nurse-s", "outcome": "sample taken"})
    assert done.status_code == 201, done.text
    url = f"/api/v1/procedures/{done.json()['id']}/corrections"
    kept = await records.client.post(url, headers=visit["doctor"], json={
        "version": 1, "reason": "outcome misspelt", "procedure": {
            "code_text": "Throat swab", "outcome": "sample taken, sent to the lab"}})
    assert kept.status_code == 200, kept.text
    assert kept.json()["content"]["performer_id"] == "nurse-s"
    named = await records.client.post(url, headers=visit["doctor"], json={
        "version": 2, "reason": "another nurse took it", "procedure": {
            "code_text": "Throat swab", "performer_id": "nurse-t",
            "outcome": "sample taken, sent to the lab"}})
    assert named.status_code == 200, named.text
    assert named.json()["content"]["performer_id"] == "nurse-t"
