"""The real chest CR's study and its signed report as FHIR R4 (``ImagingStudy``,
``DiagnosticReport``), checked with the ``fhir.resources`` R4B models: the study lists
the TID 1500 SR as a series of modality SR, labelled machine-generated; the report's
conclusion is the doctor's impression, its PDF the presented form, and the automated
results appear only as labelled machine-generated Observations."""

from __future__ import annotations

from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from pydicom.uid import Comprehensive3DSRStorage

from healthflow.common.events.outbox import recorded_events
from healthflow.xray.checks import LABEL

from .conftest import DICOM, DOCTOR, PATIENT, RADIOGRAPHER, ordered
from .test_processing import results_when_ready, worker  # noqa: F401 (fixture)
from .test_real_radiographs import encoded, real

TEXT = {"findings": "Clear lungs <no> consolidation & no effusion.",
        "impression": "Normal chest radiograph."}


async def test_a_study_and_its_signed_report_are_valid_fhir_r4(worker, tokens) -> None:  # noqa: F811
    http, app = worker
    order = await ordered(http, app, tokens)
    ds = real("RG1_UNCR.dcm", order)
    up = await http.post("/api/v1/imaging/studies", params={"order_id": order["id"]},
                         content=encoded(ds),
                         headers=tokens.headers(RADIOGRAPHER, ("radiographer",)) | DICOM)
    assert up.status_code == 201, up.text
    study_id = up.json()["id"]
    doctor, patient = tokens.headers(DOCTOR, ("doctor",)), tokens.headers(PATIENT, ("patient",))
    await results_when_ready(http, study_id, doctor)

    base = f"/api/v1/imaging/studies/{study_id}"
    answer = await http.get(f"{base}/fhir", headers=doctor)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    study = ImagingStudy.model_validate(answer.json())
    assert study.status == "available" and study.subject.reference == f"Patient/{PATIENT}"
    assert {(i.system, i.value) for i in study.identifier} >= {
        ("urn:dicom:uid", f"urn:oid:{ds.StudyInstanceUID}")}
    assert [i.value for i in study.identifier if i.type] == [order["accession_number"]]
    assert study.basedOn[0].reference == f"ServiceRequest/{order['id']}"
    [series, measured] = study.series  # the image's, then the TID 1500 SR's
    assert (series.uid, series.modality.code) == (ds.SeriesInstanceUID, "CR")
    assert series.bodySite.code == "51185008"  # SNOMED CT thoracic structure
    [instance] = series.instance
    assert instance.uid == ds.SOPInstanceUID
    assert instance.sopClass.code == f"urn:oid:{ds.SOPClassUID}"
    assert measured.modality.code == "SR" and study.numberOfInstances == 2
    [report_sr] = measured.instance
    assert report_sr.sopClass.code == f"urn:oid:{Comprehensive3DSRStorage}"
    assert LABEL in report_sr.title
    assert [m.code for m in study.modality] == ["CR", "SR"]
    [endpoint] = study.contained
    assert endpoint.address.endswith(f"/api/v1/dicomweb/studies/{ds.StudyInstanceUID}")

    report = f"{base}/report"
    assert (await http.put(report, headers=doctor, json=TEXT)).status_code == 200
    unsigned = await http.get(f"{report}/fhir", headers=doctor)
    assert unsigned.status_code == 404 and "report-not-found" in unsigned.text
    # the patient's ImagingStudy lists the machine's SR only once the report is signed
    early = ImagingStudy.model_validate((await http.get(f"{base}/fhir",
                                                        headers=patient)).json())
    assert [(s.modality.code, s.numberOfInstances) for s in early.series] == [("CR", 1)]
    assert early.numberOfInstances == 1 and [m.code for m in early.modality] == ["CR"]
    assert LABEL not in str(early.model_dump())
    assert (await http.post(f"{report}/sign", headers=doctor)).status_code == 200
    signed = ImagingStudy.model_validate((await http.get(f"{base}/fhir",
                                                         headers=patient)).json())
    assert [s.modality.code for s in signed.series] == ["CR", "SR"]

    answer = await http.get(f"{report}/fhir", headers=patient)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    fhir_report = DiagnosticReport.model_validate(answer.json())
    assert fhir_report.status == "final"
    assert fhir_report.conclusion == TEXT["impression"]
    assert [s.reference for s in fhir_report.imagingStudy] == [f"ImagingStudy/{study_id}"]
    assert fhir_report.resultsInterpreter[0].reference == f"Practitioner/{DOCTOR}"
    assert "&lt;no&gt; consolidation &amp; no effusion" in fhir_report.text.div
    [form] = fhir_report.presentedForm
    assert form.contentType == "application/pdf" and form.url.endswith(f"{report}/pdf")
    pdf = await http.get(f"{report}/pdf", headers=patient)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # the automated checks: only as preliminary, labelled, machine-generated observations
    observations = fhir_report.contained
    assert {o.code.text for o in observations} >= {"Automated check: view",
                                                   "Automated check: lung fields"}
    assert all(o.status == "preliminary" and LABEL in o.note[0].text
               and "machine-generated" in o.method.text for o in observations)
    assert {r.reference for r in fhir_report.result} == {f"#{o.id}" for o in observations}

    as_doctor = await http.get(f"{report}/fhir", headers=doctor)
    assert as_doctor.status_code == 200 and as_doctor.json() == answer.json()
    stranger = await http.get(f"{report}/fhir", headers=tokens.headers("dr-9", ("doctor",)))
    other = await http.get(f"{base}/fhir", headers=tokens.headers("p-2", ("patient",)))
    assert (stranger.status_code, other.status_code) == (403, 404)
    accessed = await recorded_events(app.state.runtime.db, {"type": "xray.accessed"})
    scopes = [(e.data or {})["scope"] for e in accessed
              if (e.data or {})["accessor_id"] == DOCTOR]
    assert scopes.count("fhir") == 1 and "report" in scopes
