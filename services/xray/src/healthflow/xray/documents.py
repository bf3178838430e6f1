"""The signed radiology report as documents: a PDF (Typst, the approach of the printed
prescription) and a DICOM Basic Text SR. Rendering machinery only (the use case is
:func:`healthflow.xray.reports.report_document`).

Both are made from the final report, its study and its order, deterministically: the
PDF's document date is unset and the SR's Series and SOP Instance UIDs derive from the
report id (pydicom ``generate_uid`` with entropy sources), so the same report gives
the same bytes and the SR keeps one identity however often it is fetched.

The SR follows the Basic Text SR IOD (PS3.3 A.35.1) with the content of TID 2000
"Basic Diagnostic Imaging Report" (PS3.16): a root CONTAINER "Diagnostic imaging
report" (LOINC 18748-4) holding a "Findings" (DCM 121070) section with one "Finding"
(DCM 121071) TEXT item and an "Impressions" (DCM 121072) section with one "Impression"
(DCM 121073) TEXT item; VERIFIED by the signing doctor at the issue time. HealthFlow
keeps no names here, so the Verifying Observer Name is the doctor's user id and the
Patient's Name is empty (type 2).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import typst
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
"""Basic Text SR Storage SOP Class UID (PS3.4 B.5)."""
SR_SERIES_NUMBER = 900


def code(value: str, scheme: str, meaning: str) -> Dataset:
    """One Code Sequence item (PS3.3 Table 8.8-1): value, scheme designator, meaning."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


@dataclass(frozen=True)
class PrintedReport:
    """What the PDF shows (text only): ids, the examination, the issue time
    (``YYYY-MM-DD HH:MM``, UTC), the findings and impression."""

    id: str
    status: str
    patient: str
    examination: str
    accession_number: str
    study_uid: str
    author: str
    issued: str
    findings: str
    impression: str


@cache
def _template() -> bytes:
    return resources.files("healthflow.xray").joinpath("templates/report.typ").read_bytes()


def printed(report: dict[str, Any], study: dict[str, Any], order: dict[str, Any]
            ) -> PrintedReport:
    """What the PDF of the final ``report`` (shapes in :mod:`.store`) shows."""
    site = order["body_site"]
    return PrintedReport(
        id=report["_id"], status=report["status"], patient=report["patient_id"],
        examination=f"{order['body_part']} {order['view']} (SNOMED CT {site['code']} "
                    f"{site['display']})",
        accession_number=order["accession_number"], study_uid=study["study_uid"],
        author=report["author_id"], issued=f"{report['issued_at']:%Y-%m-%d %H:%M}",
        findings=report["findings"], impression=report["impression"])


def render_pdf(report: PrintedReport) -> bytes:
    """The PDF of ``report``; the same bytes for equal input."""
    pdf: bytes = typst.compile(_template(), sys_inputs={
        "data": json.dumps(asdict(report), ensure_ascii=False)})
    return pdf


def _text_section(concept: Dataset, item_concept: Dataset, text: str) -> Dataset:
    """A CONTAINER section holding one TEXT item (TID 2000 rows 2-3)."""
    entry = Dataset()
    entry.RelationshipType, entry.ValueType = "CONTAINS", "TEXT"
    entry.ConceptNameCodeSequence = Sequence([item_concept])
    entry.TextValue = text
    section = Dataset()
    section.RelationshipType, section.ValueType = "CONTAINS", "CONTAINER"
    section.ConceptNameCodeSequence = Sequence([concept])
    section.ContinuityOfContent = "SEPARATE"
    section.ContentSequence = Sequence([entry])
    return section


def _dt(at: datetime) -> tuple[str, str]:
    """(DA, TM) of an aware UTC time."""
    return at.strftime("%Y%m%d"), at.strftime("%H%M%S")


def basic_text_sr(report: dict[str, Any], study: dict[str, Any], order: dict[str, Any]
                  ) -> bytes:
    """The DICOM Part 10 bytes (Explicit VR Little Endian, UTF-8 text) of the final
    ``report`` as a Basic Text SR in the study's Study Instance UID (module docstring)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[report["_id"], "sr-instance"])
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = (
        report["patient_id"], "", "", "")
    ds.StudyInstanceUID, ds.AccessionNumber = study["study_uid"], order["accession_number"]
    ds.StudyDate, ds.StudyTime = _dt(study["created_at"])
    ds.TimezoneOffsetFromUTC = "+0000"  # every DA/TM here is UTC (PS3.3 C.12.1.1.8)
    ds.ReferringPhysicianName, ds.StudyID = "", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", SR_SERIES_NUMBER, 1
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[report["_id"], "sr-series"])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.Manufacturer = "HealthFlow"
    ds.ContentDate, ds.ContentTime = _dt(report["issued_at"])
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = report["author_id"]
    observer.VerifyingOrganization = ""
    observer.VerificationDateTime = report["issued_at"].strftime("%Y%m%d%H%M%S+0000")
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([code("18748-4", "LN",
                                                "Diagnostic imaging report")])
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2000"
    ds.ContentTemplateSequence = Sequence([template])
    ds.ContentSequence = Sequence([
        _text_section(code("121070", "DCM", "Findings"), code("121071", "DCM", "Finding"),
                      report["findings"]),
        _text_section(code("121072", "DCM", "Impressions"),
                      code("121073", "DCM", "Impression"), report["impression"])])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
