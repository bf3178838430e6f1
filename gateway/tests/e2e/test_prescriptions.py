"""Prescriptions through the gateway (issue 11), on the session's platform.

A patient records a penicillin allergy and books a doctor, who checks them in; in
that encounter the doctor's amoxicillin prescription is refused with 409 naming the
allergy, then issued with an override and its reason; the patient sees it; a
pharmacist dispenses it in full and it completes; a doctor without a care
relationship is refused; the patient's and the doctor's FHIR export hold it as a
``MedicationRequest``; the patient downloads the PDF, and anyone without an
account checks its signed hash at the address its QR code holds; the audit log holds
the override's reason.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import pypdf
from fhir.resources.R4B.bundle import Bundle

from healthflow.devkit.testing import RunningPlatform, eventually
from healthflow.prescription import keys
from healthflow.prescription.domain import signed_message

from .conftest import User, assert_problem, audit_events, create_staff, ok
from .test_records import checked_in_appointment

AMOXICILLIN = {"medication": {"text": "Amoxicillin"}, "dose": {"value": 500, "unit": "mg"},
               "route": "oral", "frequency": {"count": 3}, "duration": {"value": 7},
               "quantity": {"value": 21, "unit": "{capsule}"}, "repeats": 0}
REASON = "tolerated amoxicillin in 2024 under observation"


async def encounter_of(api: Any, patient: User) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def started() -> bool:
        found[:] = ok(await api.get("/api/v1/encounters", headers=patient.headers,
                                    params={"patient_id": patient.id}))["items"]
        return bool(found) and found[0]["status"] == "in-progress"

    await eventually(started, within=20, message="no encounter at check-in")
    return found[0]


async def allergy_known(api: Any, doctor: User, encounter_id: str) -> None:
    """Wait until the prescription service knows the encounter and the allergy."""

    async def conflicts() -> bool:
        response = await api.post("/api/v1/prescriptions/checks", headers=doctor.headers,
                                  json={"encounter_id": encounter_id,
                                        "medication": {"text": "Amoxicillin"}})
        return response.status_code == 200 and bool(response.json()["conflicts"])

    await eventually(conflicts, within=20, message="the allergy or encounter never arrived")


async def test_an_allergy_conflict_is_overridden_seen_by_the_patient_and_dispensed(
        platform: RunningPlatform, admin: User, compliance: User) -> None:
    async with platform.client() as api:
        patient, doctor, _ = await checked_in_appointment(api, admin)
        ok(await api.patch("/api/v1/patients/me", headers=patient.headers, json={
            "allergies": [{"code": {"text": "Penicillin"}, "criticality": "high"}]}))
        encounter = await encounter_of(api, patient)
        await allergy_known(api, doctor, encounter["id"])
        body = {**AMOXICILLIN, "encounter_id": encounter["id"]}

        refused = assert_problem(await api.post("/api/v1/prescriptions", headers=doctor.headers,
                                                json=body), 409, "prescription-safety")
        assert [c["kind"] for c in refused["conflicts"]] == ["allergy-class"]
        stranger = await create_staff(api, admin, ["doctor"], label="rx-stranger")
        assert_problem(await api.post("/api/v1/prescriptions", headers=stranger.headers,
                                      json=body), 403, "not-your-encounter")
        rx = ok(await api.post("/api/v1/prescriptions", headers=doctor.headers,
                               json={**body, "override": {"reason": REASON}}), 201)
        assert rx["status"] == "active" and rx["override"]["reason"] == REASON

        url = f"/api/v1/prescriptions/{rx['id']}"
        assert_problem(await api.get(url, headers=stranger.headers), 403, "not-treating")
        assert_problem(await api.get("/api/v1/prescriptions", headers=stranger.headers,
                                     params={"patient_id": patient.id}), 403, "not-treating")
        mine = ok(await api.get("/api/v1/prescriptions", headers=patient.headers,
                                params={"patient_id": patient.id}))["items"]
        assert [p["id"] for p in mine] == [rx["id"]]
        await exported_with_the_prescription(api, patient, doctor, rx["id"])

        pharmacist = await create_staff(api, admin, ["pharmacist"], label="rx-pharmacist")
        assert ok(await api.get(url, headers=pharmacist.headers))["status"] == "active"
        assert_problem(await api.post(f"{url}/dispense", headers=doctor.headers, json={
            "quantity": {"value": 21, "unit": "{capsule}"}}), 403)
        assert_problem(await api.post(f"{url}/dispense", headers=pharmacist.headers, json={
            "quantity": {"value": 22, "unit": "{capsule}"}}), 409, "over-dispense")
        done = ok(await api.post(f"{url}/dispense", headers=pharmacist.headers, json={
            "quantity": {"value": 21, "unit": "{capsule}"}}))
        assert done["status"] == "completed" and done["dispenses"][0]["by"] == pharmacist.id
        assert ok(await api.get(url, headers=patient.headers))["status"] == "completed"

        await printed_and_verified(api, patient, rx["id"])

        async def audited() -> bool:
            entries = await audit_events(api, compliance, patient=patient.id)
            issued = [e for e in entries if e["type"] == "prescription.issued"]
            return bool(issued) and "prescription.dispensed" in {e["type"] for e in entries} \
                and REASON in str(issued[0])

        await eventually(audited, within=20, message="the override never reached the audit log")


async def exported_with_the_prescription(api: httpx.AsyncClient, patient: User, doctor: User,
                                         rx_id: str) -> None:
    """The patient's and the treating doctor's FHIR export hold the prescription as an R4
    ``MedicationRequest`` (the records service read it from the prescription service
    with each caller's own token), with no missing-data outcome; the Bundle validates.
    The doctor asks for the largest page (``_count`` 500, more than the prescription
    list's own cap of 200 per call)."""
    for reader, count in ((patient, "100"), (doctor, "500")):
        bundle = ok(await api.get(f"/api/v1/fhir/Patient/{patient.id}/$everything",
                                  headers=reader.headers, params={"_count": count}))
        Bundle.model_validate(bundle)
        assert [e["search"]["mode"] for e in bundle["entry"]].count("outcome") == 0
        requests = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "MedicationRequest"]
        assert [(r["id"], r["status"]) for r in requests] == [(rx_id, "active")]
        [request] = requests
        assert request["subject"] == {"reference": f"Patient/{patient.id}"}
        assert request["requester"] == {"reference": f"Practitioner/{doctor.id}"}
        assert request["medicationCodeableConcept"]["text"] == "Amoxicillin"


async def printed_and_verified(api: httpx.AsyncClient, patient: User, rx_id: str) -> None:
    """The patient's PDF names the public verification address under the gateway, where
    its SHA-256 is signed with the service's Ed25519 key."""
    printed = await api.get(f"/api/v1/prescriptions/{rx_id}/pdf", headers=patient.headers)
    assert printed.status_code == 200 and printed.content.startswith(b"%PDF-")
    verify = f"/api/v1/prescriptions/verify/{rx_id}"
    text = pypdf.PdfReader(io.BytesIO(printed.content)).pages[0].extract_text()
    assert str(api.base_url).rstrip("/") + verify in text
    digest = hashlib.sha256(printed.content).hexdigest()
    async with httpx.AsyncClient(base_url=api.base_url) as anyone:  # no token
        checked = ok(await anyone.get(verify, params={"sha256": digest}))
    assert checked["matches"] is True and checked["status"] == "completed"
    document = next(d for d in checked["documents"] if d["sha256"] == digest)
    assert keys.verify(checked["keys"][0], signed_message(rx_id, digest), document["signature"])
