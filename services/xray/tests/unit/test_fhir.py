"""The FHIR R4 mapping alone (no I/O): a study of photographs of films, and a report that
is not signed, checked with the ``fhir.resources`` R4B models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy

from healthflow.xray import fhir
from healthflow.xray.checks import LABEL

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ORDER = {"_id": "o-1", "requester_id": "dr-1", "accession_number": "HF0123456789AB",
         "body_site": {"system": "http://snomed.info/sct", "code": "85562004",
                       "display": "Hand structure"}}
STUDY = {"_id": "s-1", "study_uid": "1.2.3", "patient_id": "p-1", "encounter_id": "e-1",
         "order_id": "o-1", "modalities": ["XC"], "created_at": AT, "updated_at": AT}
PHOTO = {"_id": "i-1", "series_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.4.5",
         "sop_class_uid": None, "modality": "XC", "number": 1, "uploaded_at": AT}
REPORT = {"_id": "r-1", "status": "preliminary", "version": 2, "updated_at": AT,
          "issued_at": None, "patient_id": "p-1", "encounter_id": "e-1",
          "author_id": "dr-1", "findings": "x", "impression": "y"}


def test_a_study_of_photographs_has_no_dicomweb_endpoint_and_secondary_capture() -> None:
    resource = fhir.imaging_study(STUDY, [PHOTO], ORDER, dicomweb_url="https://h/api/v1/dicomweb")
    study = ImagingStudy.model_validate(resource)
    assert study.endpoint is None and study.contained is None
    [series] = study.series
    assert series.modality.code == "XC" and series.bodySite.code == "85562004"
    assert series.instance[0].sopClass.code == "urn:oid:1.2.840.10008.5.1.4.1.1.7"
    assert study.started.isoformat().startswith("2026-03-02T09:30:00")
    assert resource["started"] == "2026-03-02T09:30:00.000Z"


def test_only_a_signed_report_is_a_diagnostic_report() -> None:
    with pytest.raises(ValueError, match="signed"):
        fhir.diagnostic_report(REPORT, STUDY, ORDER, pdf_url="https://h/r.pdf")
    signed = REPORT | {"status": "final", "issued_at": AT}
    result = {"_id": "i-1", "processed_at": AT, "checks": {
        "view": {"code": "ok"}, "lung_fields": {"code": "warning", "boxes": []}}}
    report = DiagnosticReport.model_validate(fhir.diagnostic_report(
        signed, STUDY, ORDER, pdf_url="https://h/r.pdf", results=[result]))
    assert report.conclusion == "y" and report.status == "final"
    assert [o.valueCodeableConcept.text for o in report.contained] == ["ok", "warning"]
    assert all(LABEL in o.note[0].text for o in report.contained)
