"""X-ray imaging through the gateway (issue 12, first slice), on the session's platform.

A doctor checks a patient in (the records service starts the encounter, the xray
service learns it from ``encounter.started``) and orders a chest X-ray; a
radiographer finds it on the work list and uploads a DICOM radiograph (made with
pydicom) through the gateway; a truncated file is refused with nothing stored; the
patient lists the study, the doctor gets its PNG preview and the file; a doctor
without a care relationship is refused; the doctor drafts and signs the report,
which the patient sees once it is final, and the order is completed; a second image
arrives over STOW-RS and viewers search and retrieve the study over DICOMweb
(QIDO-RS, WADO-RS, a rendered frame) through the gateway, with the dicomweb-client
library too; the study and the signed report are read as FHIR R4 (``ImagingStudy``,
``DiagnosticReport``, checked with the ``fhir.resources`` R4B models). The real chest
CR (pydicom-data) is processed: its lung-field overlay is read like its preview, and
its de-identified copy only with the teaching/export permission.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from dicomweb_client.api import DICOMwebClient
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file

from healthflow.devkit.dicom import radiograph
from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, assert_problem, create_staff, ok
from .test_records import checked_in_appointment


async def order_in_encounter(api: Any, doctor: User, patient: User) -> dict[str, Any]:
    """Wait for the encounter to reach imaging, then order a chest PA in it."""
    encounters = ok(await api.get("/api/v1/encounters", headers=patient.headers,
                                  params={"patient_id": patient.id}))["items"]
    order: dict[str, Any] = {}

    async def ordered() -> bool:
        nonlocal order
        response = await api.post("/api/v1/imaging/orders", headers=doctor.headers, json={
            "encounter_id": encounters[0]["id"], "body_part": "CHEST", "view": "PA",
            "priority": "urgent", "question": "Persistent cough; pneumonia?"})
        order = response.json()
        return response.status_code == 201

    await eventually(ordered, within=20, message="imaging never learnt of the encounter")
    return order


async def test_an_xray_is_ordered_uploaded_listed_previewed_and_kept_from_strangers(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        patient, doctor, _ = await checked_in_appointment(api, admin)

        async def started() -> bool:
            items = ok(await api.get("/api/v1/encounters", headers=patient.headers,
                                     params={"patient_id": patient.id}))["items"]
            return bool(items) and items[0]["status"] == "in-progress"

        await eventually(started, within=20, message="no encounter at check-in")
        order = await order_in_encounter(api, doctor, patient)
        radiographer = await create_staff(api, admin, ["radiographer"], label="radiographer")
        stranger = await create_staff(api, admin, ["doctor"], label="dr-xray-stranger")
        work = ok(await api.get("/api/v1/imaging/orders", headers=radiographer.headers))
        assert order["id"] in [o["id"] for o in work["items"]]

        upload = {"params": {"order_id": order["id"]}}
        dicom = radiograph(patient.id, accession_number=order["accession_number"])
        assert_problem(await api.post("/api/v1/imaging/studies", content=dicom[:-700],
                                      headers=radiographer.headers
                                      | {"Content-Type": "application/dicom"}, **upload),
                       422, "invalid-image")
        study = ok(await api.post("/api/v1/imaging/studies", content=dicom,
                                  headers=radiographer.headers
                                  | {"Content-Type": "application/dicom"}, **upload), 201)
        listed = ok(await api.get("/api/v1/imaging/studies", headers=patient.headers,
                                  params={"patient_id": patient.id}))["items"]
        assert [s["id"] for s in listed] == [study["id"]]  # the refused file left nothing
        instance = listed[0]["series"][0]["instances"][0]
        assert instance["modality"] == "CR" and instance["size"] == len(dicom)

        preview = await api.get(instance["preview"], headers=doctor.headers)
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(preview.content)).size == (64, 64)
        file = await api.get(instance["file"], headers=patient.headers)
        assert file.status_code == 200 and file.content == dicom
        for url in (instance["preview"], instance["file"], f"/api/v1/imaging/studies/"
                    f"{study['id']}"):
            assert_problem(await api.get(url, headers=stranger.headers), 403, "not-treating")

        # a second image of the study stored over STOW-RS by a DICOMweb client
        web_upload = DICOMwebClient(url=f"{platform.gateway_url}/api/v1/dicomweb",
                                    headers=dict(radiographer.headers))
        second = dcmread(io.BytesIO(radiograph(
            patient.id, accession_number=order["accession_number"])))
        second.StudyInstanceUID = study["study_instance_uid"]
        stored = await asyncio.to_thread(web_upload.store_instances, [second])
        assert len(stored.ReferencedSOPSequence) == 1

        report = f"/api/v1/imaging/studies/{study['id']}/report"
        ok(await api.put(report, headers=doctor.headers, json={
            "findings": "No focal consolidation.", "impression": "Normal chest."}))
        assert_problem(await api.get(report, headers=patient.headers), 404, "report-not-found")
        assert ok(await api.post(f"{report}/sign", headers=doctor.headers))["status"] == "final"
        assert ok(await api.get(report, headers=patient.headers))["impression"] == "Normal chest."

        # the study and the signed report as FHIR R4, their URLs under the gateway
        fhir_study = await api.get(f"/api/v1/imaging/studies/{study['id']}/fhir",
                                   headers=doctor.headers)
        assert fhir_study.headers["content-type"].startswith("application/fhir+json")
        imaging = ImagingStudy.model_validate(ok(fhir_study))
        assert imaging.numberOfInstances == 2 and imaging.subject.reference == \
            f"Patient/{patient.id}"
        assert imaging.contained[0].address.startswith(platform.gateway_url)
        fhir_report = DiagnosticReport.model_validate(
            ok(await api.get(f"{report}/fhir", headers=patient.headers)))
        assert (fhir_report.status, fhir_report.conclusion) == ("final", "Normal chest.")
        assert fhir_report.imagingStudy[0].reference == f"ImagingStudy/{study['id']}"
        pdf = await api.get(fhir_report.presentedForm[0].url, headers=patient.headers)
        assert fhir_report.presentedForm[0].url.startswith(platform.gateway_url)
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert_problem(await api.get(f"{report}/fhir", headers=stranger.headers), 403,
                       "not-treating")

        # signing completed the order; DICOMweb through the gateway (QIDO-RS, WADO-RS)
        assert ok(await api.get(f"/api/v1/imaging/orders/{order['id']}",
                                headers=doctor.headers))["status"] == "completed"
        studies = ok(await api.get("/api/v1/dicomweb/studies", headers=patient.headers))
        study_uid = studies[0]["0020000D"]["Value"][0]
        assert studies[0]["00100020"]["Value"] == [patient.id]
        retrieved = await api.get(f"/api/v1/dicomweb/studies/{study_uid}",
                                  headers=doctor.headers)
        assert retrieved.status_code == 200
        assert retrieved.headers["content-type"].startswith("multipart/related")
        assert dicom in retrieved.content  # the stored file, byte for byte, as one part
        assert_problem(await api.get(f"/api/v1/dicomweb/studies/{study_uid}",
                                     headers=stranger.headers), 403, "not-treating")

        # the same through a DICOMweb client library, as a viewer would call it
        web = DICOMwebClient(url=f"{platform.gateway_url}/api/v1/dicomweb",
                             headers=dict(doctor.headers))
        found = await asyncio.to_thread(web.search_for_studies,
                                        search_filters={"PatientID": patient.id})
        assert [s["0020000D"]["Value"][0] for s in found] == [study_uid]
        found_instances = await asyncio.to_thread(web.search_for_instances,
                                                  study_instance_uid=study_uid)
        [listed_instance] = [i for i in found_instances
                             if i["00080018"]["Value"] == [second.SOPInstanceUID]]
        series_uid = listed_instance["0020000E"]["Value"][0]
        sop_uid = listed_instance["00080018"]["Value"][0]
        ds = await asyncio.to_thread(web.retrieve_instance, study_uid, series_uid, sop_uid)
        assert ds.SOPInstanceUID == sop_uid and ds.PatientID == patient.id
        rendered = await asyncio.to_thread(web.retrieve_instance_frames_rendered, study_uid,
                                           series_uid, sop_uid, [1], ("image/png",))
        assert Image.open(io.BytesIO(rendered)).size == (64, 64)  # WADO-RS rendered frame


async def test_the_real_chest_cr_gets_a_lung_overlay_and_a_deidentified_copy(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        patient, doctor, _ = await checked_in_appointment(api, admin)
        order = await order_in_encounter(api, doctor, patient)
        radiographer = await create_staff(api, admin, ["radiographer"], label="radiographer")
        path = get_testdata_file("RG1_UNCR.dcm")
        assert path is not None, "pydicom-data does not ship RG1_UNCR.dcm"
        ds = dcmread(path)  # as the modality sends it: the order's patient and accession
        ds.PatientID, ds.AccessionNumber = patient.id, order["accession_number"]
        ds.BurnedInAnnotation = "NO"  # stated, so a de-identified copy may be made
        sent = io.BytesIO()
        ds.save_as(sent, enforce_file_format=True)
        study = ok(await api.post("/api/v1/imaging/studies", content=sent.getvalue(),
                                  params={"order_id": order["id"]},
                                  headers=radiographer.headers
                                  | {"Content-Type": "application/dicom"}), 201)
        results: dict[str, Any] = {}

        async def processed() -> bool:
            nonlocal results
            results = ok(await api.get(f"/api/v1/imaging/studies/{study['id']}/results",
                                       headers=doctor.headers))
            return bool(results["instances"])

        await eventually(processed, within=60, message="the chest CR was never processed")
        # machine suggestions reach the patient only with the signed report
        assert_problem(await api.get(f"/api/v1/imaging/studies/{study['id']}/results",
                                     headers=patient.headers), 404)
        [one] = results["instances"]
        assert one["checks"]["lung_fields"]["code"] == "ok"
        overlay = await api.get(one["overlay"], headers=doctor.headers)
        assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
        assert "machine-generated" in Image.open(io.BytesIO(overlay.content)).info[
            "Description"]

        for user in (patient, radiographer):  # the viewers' permissions are not enough
            assert_problem(await api.get(one["deidentified"], headers=user.headers), 403)
        copy = await api.get(one["deidentified"], headers=doctor.headers)
        assert copy.status_code == 200 and copy.headers["content-type"] == "application/dicom"
        deidentified = dcmread(io.BytesIO(copy.content))
        assert deidentified.PatientID != patient.id and patient.id.encode() not in copy.content
        assert deidentified.StudyInstanceUID != ds.StudyInstanceUID
        assert order["accession_number"].encode() not in copy.content
