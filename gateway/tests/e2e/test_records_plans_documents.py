"""Treatment plans, procedures and documents through the gateway (issue 11), on the
session's platform: after check-in the doctor writes a diagnosis, a plan that addresses
it (activated), a procedure of the plan, uploads a real PDF and a real JPEG (streamed
under the gateway's upload policy); a PNG sent as a PDF and a truncated PDF are 422
problem+json and leave nothing; a doctor without a care relationship is refused at
every step; a document filed by mistake is withdrawn (entered-in-error, kept); the
patient reads it all, downloads the file, and the FHIR export holds CarePlan,
Procedure and DocumentReference (the withdrawn one marked), names the hospital, and
validates."""

from __future__ import annotations

import io
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from pypdf import PdfWriter

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, assert_problem, create_staff, ok
from .test_records import checked_in_appointment


def a_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def an_image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (180, 90, 60)).save(out, kind)
    return out.getvalue()


async def encounter_of(api: Any, patient: User) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def started() -> bool:
        nonlocal found
        found = ok(await api.get("/api/v1/encounters", headers=patient.headers,
                                 params={"patient_id": patient.id}))["items"]
        return bool(found) and found[0]["status"] == "in-progress"

    await eventually(started, within=20, message="no encounter at check-in")
    return found[0]


async def upload(api: Any, user: User, encounter_id: str, body: bytes, content_type: str,
                 category: str) -> Any:
    return await api.post("/api/v1/documents", content=body,
                          params={"encounter_id": encounter_id, "category": category},
                          headers={**user.headers, "Content-Type": content_type})


async def plan_and_procedure(api: Any, doctor: User, encounter_id: str) -> tuple[Any, Any]:
    diagnosis = ok(await api.post(f"/api/v1/records/encounters/{encounter_id}/entries",
                                  headers=doctor.headers,
                                  json={"entry": {"type": "Condition", "code": "L03.1"}}), 201)
    plan = ok(await api.post("/api/v1/care-plans", headers=doctor.headers, json={
        "encounter_id": encounter_id, "title": "Cellulitis of the forearm",
        "addresses": [diagnosis["id"]], "goals": [{"description": "Redness receding"}],
        "activities": [{"kind": "medication", "description": "Flucloxacillin 7 days"},
                       {"kind": "procedure", "description": "Wound dressing"}]}), 201)
    active = ok(await api.post(f"/api/v1/care-plans/{plan['id']}/status",
                               headers=doctor.headers, json={"version": 1, "status": "active"}))
    assert active["content"]["status"] == "active"
    procedure = ok(await api.post("/api/v1/procedures", headers=doctor.headers, json={
        "encounter_id": encounter_id, "code_text": "Wound dressing",
        "care_plan_id": plan["id"], "outcome": "clean, dressed"}), 201)
    return plan, procedure


async def test_plans_procedures_and_documents_through_the_gateway(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        patient, doctor, appointment = await checked_in_appointment(api, admin)
        stranger = await create_staff(api, admin, ["doctor"], label="dr-stranger-docs")
        encounter = await encounter_of(api, patient)
        assert encounter["hospital_id"]  # the appointment's hospital
        plan, procedure = await plan_and_procedure(api, doctor, encounter["id"])

        pdf, jpeg = a_pdf(), an_image("JPEG")
        report = ok(await upload(api, doctor, encounter["id"], pdf, "application/pdf",
                                 "lab-report"), 201)
        photo = ok(await upload(api, doctor, encounter["id"], jpeg, "image/jpeg", "photo"), 201)
        for body, problem in ((an_image("PNG"), "type-mismatch"), (pdf[:-40], "unreadable-pdf")):
            refused = await upload(api, doctor, encounter["id"], body, "application/pdf",
                                   "referral")
            assert_problem(refused, 422, "invalid-document")
            assert refused.json()["problem"] == problem
        for method, url, kwargs in (
                ("POST", "/api/v1/care-plans", {"json": {"encounter_id": encounter["id"],
                                                         "title": "x"}}),
                ("GET", f"/api/v1/care-plans/{plan['id']}", {}),
                ("POST", "/api/v1/procedures", {"json": {"encounter_id": encounter["id"],
                                                         "code_text": "x"}}),
                ("GET", f"/api/v1/procedures/{procedure['id']}", {}),
                ("GET", f"/api/v1/documents/{report['id']}", {}),
                ("GET", report["file"], {})):
            assert_problem(await api.request(method, url, headers=stranger.headers, **kwargs),
                           403, "not-treating")
        assert_problem(await upload(api, stranger, encounter["id"], pdf, "application/pdf",
                                    "referral"), 403, "not-treating")
        wrong = ok(await upload(api, doctor, encounter["id"], pdf, "application/pdf",
                                "referral"), 201)
        withdraw = f"/api/v1/documents/{wrong['id']}/entered-in-error"
        reason = {"json": {"reason": "filed under the wrong patient"}}
        assert_problem(await api.post(withdraw, headers=stranger.headers, **reason),
                       403, "not-treating")
        assert ok(await api.post(withdraw, headers=doctor.headers, **reason)
                  )["status"] == "entered-in-error"
        assert_problem(await api.post(withdraw, headers=doctor.headers, **reason),
                       409, "document-entered-in-error")

        listed = ok(await api.get("/api/v1/documents", headers=patient.headers,
                                  params={"patient_id": patient.id}))
        assert [d["id"] for d in listed["items"]] == [report["id"], photo["id"], wrong["id"]]
        downloaded = await api.get(photo["file"], headers=patient.headers)
        assert downloaded.status_code == 200 and downloaded.content == jpeg
        exported = ok(await api.get(f"/api/v1/fhir/Patient/{patient.id}/$everything",
                                    headers=patient.headers))
        Bundle.model_validate(exported)
        kinds = sorted(e["resource"]["resourceType"] for e in exported["entry"])
        assert kinds == ["CarePlan", "Condition", "DocumentReference", "DocumentReference",
                         "DocumentReference", "Encounter", "Patient", "Procedure"], kinds
        assert [e["resource"]["status"] for e in exported["entry"]
                if e["resource"]["id"] == wrong["id"]] == ["entered-in-error"]
        [exported_encounter] = [e["resource"] for e in exported["entry"]
                                if e["resource"]["resourceType"] == "Encounter"]
        assert exported_encounter["serviceProvider"] == {
            "reference": f"Organization/{encounter['hospital_id']}"}
        assert appointment["id"] == encounter["appointment_id"]
