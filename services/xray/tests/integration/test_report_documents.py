"""The signed report as documents: a PDF (Typst) whose text a reader sees, and a DICOM
Basic Text SR (TID 2000) in the study, both the same bytes each time."""

from __future__ import annotations

import io

import pypdf
from pydicom import dcmread

from healthflow.devkit.dicom import radiograph

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered

TEXT = {"findings": "Right lower lobe consolidation.\nNo effusion.",
        "impression": "Pneumonia — Ünïcode kept."}


async def test_a_signed_report_is_a_pdf_and_a_basic_text_sr(xray, tokens) -> None:
    http, app = xray
    order = await ordered(http, app, tokens)
    study = (await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                             content=radiograph(PATIENT), headers=tokens.headers(
                                 RADIOGRAPHER, ("radiographer",)) | DICOM)).json()
    url = f"/api/v1/imaging/studies/{study['id']}/report"
    doctor, patient = tokens.headers(DOCTOR, ("doctor",)), tokens.headers(PATIENT, ("patient",))
    assert (await http.put(url, headers=doctor, json=TEXT)).status_code == 200
    unsigned = await http.get(f"{url}/pdf", headers=doctor)
    assert unsigned.status_code == 404 and "report-not-found" in unsigned.text
    assert (await http.post(f"{url}/sign", headers=doctor)).status_code == 200

    pdf = await http.get(f"{url}/pdf", headers=patient)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(
        pdf.content)).pages)
    for expected in ("Radiology report", "Right lower lobe consolidation", "Pneumonia",
                     order["accession_number"], "CHEST PA"):
        assert expected in text, expected
    assert (await http.get(f"{url}/pdf", headers=patient)).content == pdf.content

    sr = await http.get(f"{url}/sr", headers=doctor)
    assert sr.status_code == 200 and sr.headers["content-type"] == "application/dicom"
    ds = dcmread(io.BytesIO(sr.content))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR Storage
    assert ds.StudyInstanceUID == study["study_instance_uid"] and ds.Modality == "SR"
    assert (ds.CompletionFlag, ds.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert ds.VerifyingObserverSequence[0].VerifyingObserverName == DOCTOR
    sections = {s.ConceptNameCodeSequence[0].CodeValue: s.ContentSequence[0].TextValue
                for s in ds.ContentSequence}
    assert sections == {"121070": TEXT["findings"], "121072": TEXT["impression"]}
    assert (await http.get(f"{url}/sr", headers=doctor)).content == sr.content
    stranger = await http.get(f"{url}/sr", headers=tokens.headers("dr-9", ("doctor",)))
    assert stranger.status_code == 403
