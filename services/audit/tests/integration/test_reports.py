"""Compliance reports: FHIR R4 AuditEvents (validated with the R4B models) and CSV, each
with the signed checkpoint that covers it."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from fhir.resources.R4B.bundle import Bundle

from healthflow.audit import store
from healthflow.auditverify import note as offline
from healthflow.common.events.envelope import CloudEvent

from .test_api import is_problem

if TYPE_CHECKING:
    from ..conftest import Audit


async def _seed(audit: Audit, make_event: Callable[..., CloudEvent],
                at: Callable[[int], datetime]) -> None:
    events = [
        make_event("patient.record_accessed", subject="patient/p-1", actor="u-doc",
                   patientid="p-1", when=at(1), patient_id="p-1", accessor_id="u-doc",
                   accessor_role="treating_doctor", accessor_roles=["doctor"],
                   purpose="emergency", scope="chart"),
        make_event("appointment.booked", subject="appointment/a-1", actor="=HYPERLINK()",
                   patientid="p-1", when=at(2)),
        make_event("appointment.booked", subject="appointment/a-2", actor="u-2",
                   patientid="p-2", when=at(3)),
        make_event("user.deactivated", subject="user/u-3", actor=None, patientid=None,
                   when=at(4)),
    ]
    for event in events:
        await audit.deliver(event)


async def test_a_patients_access_report_as_fhir_audit_events(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    await _seed(audit, make_event, at)
    response = await audit.get("/report/fhir", patient="p-1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    Bundle.model_validate(body)  # R4B models: structure, types, cardinalities
    events = [entry["resource"] for entry in body["entry"]]
    assert [e["subtype"][0]["code"] for e in events] == ["patient.record_accessed",
                                                         "appointment.booked"]
    access = events[0]
    assert access["action"] == "R" and access["type"]["code"] == "110110"
    agent = access["agent"][0]
    assert agent["who"]["identifier"]["value"] == "u-doc" and agent["requestor"] is True
    assert agent["type"]["text"] == "treating_doctor"
    assert agent["purposeOfUse"][0]["coding"][0]["code"] == "ETREAT"
    assert access["entity"][0]["what"] == {"reference": "Patient/p-1"}
    assert access["recorded"] == "2026-11-21T10:01:00.000Z"
    assert events[1]["action"] == "C"
    # the checkpoint inside verifies with the published key and covers every entry
    key = offline.parse_verifier_key((await audit.get("/checkpoints/key")).json()["verifier_key"])
    checkpoint = offline.open_checkpoint(base64.b64decode(body["signature"]["data"]).decode(),
                                         key)
    seqs = [int(e["entity"][-1]["what"]["identifier"]["value"]) for e in events]
    assert max(seqs) < checkpoint.size == 4


async def test_a_period_as_csv(audit: Audit, make_event: Callable[..., CloudEvent],
                               at: Callable[[int], datetime]) -> None:
    await _seed(audit, make_event, at)
    response = await audit.get("/report/csv", **{"from": "2026-11-21T10:02:00Z",
                                                 "to": "2026-11-21T10:05:00Z"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-checkpoint-tree-size"] == "4"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["type"] for r in rows] == ["appointment.booked", "appointment.booked",
                                         "user.deactivated"]
    assert rows[0]["actor"] == "'=HYPERLINK()"  # no formula for a spreadsheet to run
    assert rows[2]["actor"] == "" and rows[2]["action"] == "D"
    assert (await audit.get(f"/checkpoints/{4}")).status_code == 200


async def test_reports_sign_at_most_once_per_interval(
        audit: Audit, make_event: Callable[..., CloudEvent], at: Callable[[int], datetime]) -> None:
    await _seed(audit, make_event, at)
    first = await audit.get("/report/csv")
    await audit.deliver(make_event(n=99))
    for _ in range(3):  # a client polling reports does not make the service sign
        again = await audit.get("/report/csv")
        assert again.headers["x-checkpoint-tree-size"] == first.headers["x-checkpoint-tree-size"]
    assert await audit.db[store.CHECKPOINTS].count_documents({}) == 1


async def test_reports_refuse_bad_periods_and_other_roles(audit: Audit) -> None:
    backwards = {"from": "2026-11-21T10:05:00Z", "to": "2026-11-21T10:00:00Z"}
    for path in ("/report/fhir", "/report/csv"):
        assert is_problem(await audit.get(path, **backwards), 422), path
        doctor = audit.tokens.headers(roles=["doctor"])
        assert is_problem(await audit.client.get(f"/api/v1/audit{path}", headers=doctor),
                          403), path


async def test_a_patient_sees_who_accessed_their_chart_and_nothing_else(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    await _seed(audit, make_event, at)
    await audit.deliver(make_event("record.accessed", subject="patient/p-2", actor="u-nurse",
                                   patientid="p-2", when=at(6), patient_id="p-2",
                                   accessor_id="u-nurse", accessor_role="staff",
                                   accessor_roles=["nurse"], scope="history"))
    mine = await audit.client.get("/api/v1/audit/patient-access",
                                  headers=audit.tokens.headers("p-1", roles=["patient"]))
    assert mine.status_code == 200
    Bundle.model_validate(mine.json())
    events = [entry["resource"] for entry in mine.json()["entry"]]
    assert [e["subtype"][0]["code"] for e in events] == ["patient.record_accessed"]
    assert events[0]["agent"][0]["who"]["identifier"]["value"] == "u-doc"
    other = await audit.client.get("/api/v1/audit/patient-access",
                                   headers=audit.tokens.headers("p-2", roles=["patient"]))
    assert [e["resource"]["agent"][0]["type"]["text"]
            for e in other.json()["entry"]] == ["staff"]
    nobody = await audit.client.get("/api/v1/audit/patient-access",
                                    headers=audit.tokens.headers("p-9", roles=["patient"]))
    assert "entry" not in nobody.json()  # FHIR JSON has no empty arrays
    Bundle.model_validate(nobody.json())
    assert is_problem(await audit.client.get("/api/v1/audit/patient-access"), 401)
    compliance = audit.tokens.headers("p-1", roles=["compliance_officer"])
    assert is_problem(await audit.client.get("/api/v1/audit/patient-access",
                                             headers=compliance), 403)
    patient = audit.tokens.headers("p-1", roles=["patient"])
    assert is_problem(await audit.client.get("/api/v1/audit/events", headers=patient), 403)


async def test_a_patients_report_has_prescription_and_xray_reads_in_a_period(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    for minute, type_ in ((1, "prescription.accessed"), (2, "xray.accessed"),
                          (3, "record.accessed")):
        await audit.deliver(make_event(type_, subject="patient/p-1", actor="u-doc",
                                       patientid="p-1", when=at(minute), patient_id="p-1",
                                       accessor_id="u-doc", accessor_role="treating_doctor",
                                       accessor_roles=["doctor"]))
    patient = audit.tokens.headers("p-1", roles=["patient"])
    report = await audit.client.get("/api/v1/audit/patient-access", headers=patient,
                                    params={"from": "2026-11-21T10:00:00Z",
                                            "to": "2026-11-21T10:03:00Z"})
    assert report.status_code == 200
    Bundle.model_validate(report.json())
    assert [e["resource"]["subtype"][0]["code"] for e in report.json()["entry"]] == [
        "prescription.accessed", "xray.accessed"]
    backwards = {"from": "2026-11-21T10:03:00Z", "to": "2026-11-21T10:00:00Z"}
    assert is_problem(await audit.client.get("/api/v1/audit/patient-access", headers=patient,
                                             params=backwards), 422)


async def test_a_patients_long_report_comes_in_pages(
        audit: Audit, make_event: Callable[..., CloudEvent],
        at: Callable[[int], datetime]) -> None:
    for minute in range(5):
        await audit.deliver(make_event("record.accessed", subject="patient/p-1", actor="u-doc",
                                       patientid="p-1", when=at(minute), patient_id="p-1",
                                       accessor_id="u-doc", accessor_role="treating_doctor",
                                       accessor_roles=["doctor"]))
    patient = audit.tokens.headers("p-1", roles=["patient"])
    url: str | None = "/api/v1/audit/patient-access?limit=2"
    pages = []
    while url is not None:
        page = await audit.client.get(url, headers=patient)
        assert page.status_code == 200, page.text
        Bundle.model_validate(page.json())
        pages.append([e["resource"]["recorded"] for e in page.json()["entry"]])
        url = next((link["url"] for link in page.json().get("link", [])
                    if link["relation"] == "next"), None)
    assert [len(p) for p in pages] == [2, 2, 1]
    recorded = [when for page in pages for when in page]
    assert recorded == sorted(recorded)
    forged = await audit.client.get("/api/v1/audit/patient-access?cursor=not-ours",
                                    headers=patient)
    assert is_problem(forged, 400)
