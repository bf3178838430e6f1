"""``encounter.coded``: a finished encounter's billing codes (ICD-10 diagnoses, coded
procedures), published at the end and again after every later change of them, each
time the full lists with a growing revision; codes only, never text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B.procedure import Procedure

from .conftest import Records

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


@pytest.fixture
async def visit(records: Records) -> dict[str, Any]:
    """A registered patient and a walk-in encounter of ``doc-c``, in progress."""
    pid = await records.register()
    opened = await records.walk_in(pid, "doc-c")
    return {"patient": pid, "encounter": opened["id"], "doctor": records.as_("doc-c", "doctor")}


async def add(records: Records, visit: dict[str, Any], entry: dict[str, Any]) -> Any:
    written = await records.client.post(
        f"/api/v1/records/encounters/{visit['encounter']}/entries", headers=visit["doctor"],
        json={"entry": entry})
    assert written.status_code == 201, written.text
    return written.json()


async def procedure(records: Records, visit: dict[str, Any], **fields: Any) -> Any:
    done = await records.client.post("/api/v1/procedures", headers=visit["doctor"], json={
        "encounter_id": visit["encounter"], **fields})
    assert done.status_code == 201, done.text
    return done.json()


async def coded(records: Records) -> list[dict[str, Any]]:
    return sorted(await records.outbox("encounter.coded"),
                  key=lambda e: int(e["data"]["revision"]))


async def test_the_codes_go_out_at_the_end_and_again_after_every_correction(
        records: Records, visit: dict[str, Any]) -> None:
    sore = await add(records, visit, {"type": "Condition", "code": "J06.9",
                                      "text": "sore throat since Tuesday"})
    await add(records, visit, {"type": "Condition", "text": "tired"})  # no code: not billed
    await add(records, visit, {"type": "Condition", "code": "E11.9",
                               "verification_status": "refuted"})
    again = await add(records, visit, {"type": "Condition", "code": "J06.9"})  # counted once
    await procedure(records, visit, code_text="Throat swab",
                    code={"system": SNOMED, "code": "472881004"})
    await procedure(records, visit, code_text="Blood sample", status="not-done",
                    status_reason="patient refused", code={"system": SNOMED, "code": "82078001"})
    await procedure(records, visit, code_text="Advice")  # no code
    assert await coded(records) == []  # nothing until the encounter ends

    finished = await records.client.post(f"/api/v1/encounters/{visit['encounter']}/finish",
                                         headers=visit["doctor"])
    assert finished.status_code == 200, finished.text
    [first] = await coded(records)
    assert first["subject"] == f"encounter/{visit['encounter']}"
    assert first["patientid"] == visit["patient"]
    assert first["data"] | {"coded_at": None} == {
        "encounter_id": visit["encounter"], "patient_id": visit["patient"],
        "appointment_id": None, "hospital_id": "h1", "revision": 1,
        "diagnoses": [{"system": ICD10, "code": "J06.9",
                       "display": "Acute upper respiratory infection, unspecified"}],
        "procedures": [{"system": SNOMED, "code": "472881004"}], "coded_at": None}

    # a diagnosis added after the end, then the first one withdrawn: full lists each time
    await add(records, visit, {"type": "Condition", "code": "I10"})
    await add(records, visit, {"type": "MedicationStatement", "medication": "Calm tea"})  # no event
    for entry in (sore, again):
        withdrawn = await records.client.post(
            f"/api/v1/records/entries/{entry['id']}/entered-in-error", headers=visit["doctor"],
            json={"version": 1, "reason": "wrong patient"})
        assert withdrawn.status_code == 200, withdrawn.text
    events = await coded(records)
    assert [e["data"]["revision"] for e in events] == [1, 2, 3, 4]
    assert [[d["code"] for d in e["data"]["diagnoses"]] for e in events] == [
        ["J06.9"], ["J06.9", "I10"], ["J06.9", "I10"], ["I10"]]
    assert events[-1]["data"]["procedures"] == first["data"]["procedures"]
    text = json.dumps(events, default=str)
    for words in ("sore throat", "tired", "swab", "Blood sample", "Advice", "wrong patient",
                  "Calm"):
        assert words not in text
    assert (await records.runtime.db["encounters"].find_one(
        {"_id": visit["encounter"]}))["coding_revision"] == 4


async def test_a_bad_procedure_code_is_refused_and_a_good_one_is_in_the_export(
        records: Records, visit: dict[str, Any]) -> None:
    for code in ({"system": "http://www.ama-assn.org/go/cpt", "code": "99213"},
                 {"system": SNOMED, "code": "12ab"},
                 {"system": "http://www.cms.gov/Medicare/Coding/ICD10", "code": "0DTJ4ZI"}):
        refused = await records.client.post("/api/v1/procedures", headers=visit["doctor"],
                                             json={"encounter_id": visit["encounter"],
                                                   "code_text": "x", "code": code})
        assert refused.status_code == 422, refused.text
    pcs = await procedure(records, visit, code_text="Appendectomy",
                          code={"system": "http://www.cms.gov/Medicare/Coding/ICD10",
                                "code": "0dtj4zz"})
    assert pcs["content"]["code"] == {"system": "http://www.cms.gov/Medicare/Coding/ICD10",
                                      "code": "0DTJ4ZZ"}
    served = await records.client.get(f"/api/v1/fhir/Patient/{visit['patient']}/$everything",
                                      headers=records.as_(visit["patient"], "patient"))
    [resource] = [e["resource"] for e in served.json()["entry"]
                  if e["resource"]["resourceType"] == "Procedure"]
    assert resource["code"] == {"coding": [pcs["content"]["code"]], "text": "Appendectomy"}
    Procedure.model_validate(resource)
